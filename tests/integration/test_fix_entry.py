"""FIX order entry at a gateway of its own (no order path behind it): the key's order rate limit
and the gateway's backpressure reach a FIX client as ExecutionReports Rejected with the code and
message, and an order the gateway took reaches the broker as a SubmitOrder with the client's
fields. (Trading over FIX on the whole platform: tests/e2e/test_platform.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from orderstream.common import records as r
from tests.conftest import Infra
from tests.e2e.stack import CODEC
from tests.fix_client import FixClient, now
from tests.integration.gateway_process import running_gateway
from tests.kafka_tools import free_port, read

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(infra: Infra, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    async with running_gateway(infra, tmp_path, ORDERSTREAM_GATEWAY_FIX_PORT=str(port),
                               ORDERSTREAM_GATEWAY_ORDERS_PER_S="0.001",
                               ORDERSTREAM_GATEWAY_ORDERS_BURST="2") as gw:
        yield {**gw, "fix_port": port}


async def test_the_order_rate_limit_answers_a_fix_client_with_a_rejected_report(
    gateway: dict[str, Any],
) -> None:
    key = gateway["A"]
    fix = FixClient(gateway["fix_port"], key.key)
    await fix.connect()
    assert (await fix.logon(key.secret)).msg_type == "A"
    base = [(21, "1"), (55, "BTC-USD"), (54, "1"), (60, now()), (38, "0.01"), (40, "2"), (44, "30000"),
            (59, "1")]
    for i in range(3):
        fix.send("D", [(11, f"rl-{i}"), *base])
    refused = await fix.until(lambda m: m.msg_type == "8" and m.get(11) == "rl-2")
    assert (refused.get(150), refused.get(39)) == ("8", "8")
    assert (refused.get(58) or "").startswith("42901 order rate limit reached")
    sent = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 2, timeout=30)
    orders = [CODEC.decode(rec.value) for rec in sent]
    assert sorted(o.client_order_id for o in orders if isinstance(o, r.SubmitOrder)) == ["rl-0", "rl-1"]
    first = next(o for o in orders if isinstance(o, r.SubmitOrder) and o.client_order_id == "rl-0")
    assert (first.side.value, first.order_type.value, first.quantity, first.price) == (
        "BUY", "LIMIT", D("0.01"), D("30000"))
    assert not fix.problems

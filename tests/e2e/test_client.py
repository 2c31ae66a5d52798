"""The client library against the whole platform: every example of docs/client.md and of the module's
docstring runs as its own script, and a stream reconnects, subscribes again and hears its orders."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import pytest

import orderstream.client
from orderstream.client import ApiCallError, Client
from tests.kafka_tools import ROOT

pytestmark = pytest.mark.integration

FENCED = re.compile(r"```python\n(.*?)```", re.S)
SOURCES = {"docs/client.md": (ROOT / "docs" / "client.md").read_text(),
           "orderstream.client": orderstream.client.__doc__ or ""}
EXAMPLES = [(where, i, code)
            for where, text in SOURCES.items() for i, code in enumerate(FENCED.findall(text))]


def test_the_docs_have_examples() -> None:
    assert len([e for e in EXAMPLES if e[0] == "docs/client.md"]) >= 4
    assert [e for e in EXAMPLES if e[0] == "orderstream.client"]


@pytest.mark.parametrize(("where", "n", "code"), EXAMPLES, ids=[f"{w}-{n}" for w, n, _ in EXAMPLES])
def test_example_runs(platform: dict[str, Any], where: str, n: int, code: str) -> None:
    alice = platform["creds"]["accounts"]["alice"]
    env = {**platform["env"], "ORDERSTREAM_URL": platform["base"], "ORDERSTREAM_KEY": alice["key_id"],
           "ORDERSTREAM_SECRET": alice["secret"]}
    ran = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, f"{where} example {n}:\n{ran.stdout}\n{ran.stderr}"
    assert ran.stdout.strip(), "an example prints what it shows"


async def test_stream_reconnects_resubscribes_and_hears_orders_placed_after(platform: dict[str, Any]) -> None:
    alice = platform["creds"]["accounts"]["alice"]
    async with Client(platform["base"], alice["key_id"], alice["secret"]) as client, \
            client.stream(retry_s=0.1) as stream:
        await stream.subscribe_user()
        await stream.subscribe_market("BTC-USD")
        await stream.drop()
        seen = [(await stream.next_event(timeout=30))["type"] for _ in range(3)]
        assert seen == ["reconnected", "resubscribed", "resubscribed"] and stream.reconnects == 1
        placed = await client.place_order(client_order_id=f"rc-{uuid.uuid4().hex[:8]}", symbol="BTC-USD",
                                          side="SELL", quantity=Decimal("0.001"), price=Decimal("90000"))
        while True:  # the user stream is on again: the new order's reports come on the new connection
            event = await stream.next_event(timeout=60)
            if event["type"] == "execution_report" and event["data"]["order_id"] == placed.order_id:
                break
        got = await client.get_order(placed.order_id)
        assert got.symbol == "BTC-USD" and got.client_order_id == placed.client_order_id
        await client.cancel_order(placed.order_id)
        with pytest.raises(ApiCallError) as refused:
            await client.get_order("BTC-USD-nosuchorder")
        assert refused.value.code == 40401 and refused.value.status == 404
        answer = await stream.call("balances.get")
        assert Decimal(answer["balances"]["BTC"]["free"]) + Decimal(answer["balances"]["BTC"]["held"]) > 0

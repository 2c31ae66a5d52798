"""A repeated order is placed once, however late it comes (issue 15, hole 1).

Every service here remembers only its last 2 source records, so the repeat below comes long
after any window: before collateral remembered the order ids it decided, the repeat of a filled
buy was funded, routed and matched again, and traded a second time with the resting seller.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path

import aiohttp
import pytest

from orderstream.common import records as r
from tests.conftest import Infra
from tests.e2e.stack import SERVICES, Stack, instrument

pytestmark = pytest.mark.integration


async def test_a_repeat_of_a_filled_order_beyond_every_window_does_not_trade_again(
    infra: Infra, tmp_path: Path
) -> None:
    tiny_windows = {s: {f"ORDERSTREAM_{s.upper()}_DEDUPE_WINDOW": "2"} for s in SERVICES}
    stack = Stack(infra.kafka_bootstrap, tmp_path, env=tiny_windows)
    try:
        await stack.start([instrument("BTC-USD")])
        await stack.deposit("A", "USD", "100000")
        await stack.deposit("B", "BTC", "10")
        await stack.until("deposits", lambda: len(stack.balances()) == 2)
        sell = await stack.place(stack.order("B", "BTC-USD", "SELL", "3", "30000"))
        await stack.status(sell.order_id, "ACCEPTED")
        buy = await stack.place(stack.order("A", "BTC-USD", "BUY", "1", "30000"))
        await stack.status(buy.order_id, "FILLED")
        await stack.status(sell.order_id, "PARTIALLY_FILLED")

        # traffic that pushes the buy out of every service's window of recent source records
        others = [await stack.place(stack.order("B", "BTC-USD", "SELL", "0.01", str(40000 + i)))
                  for i in range(4)]
        for o in others:
            await stack.status(o.order_id, "ACCEPTED")
        for _ in range(4):
            await stack.deposit("A", "USD", "1")

        await stack.place(buy)  # the same command again, as the gateway resends a repeat
        marker = await stack.place(stack.order("A", "BTC-USD", "BUY", "0.01", "1000"))
        await stack.status(marker.order_id, "ACCEPTED")  # A's commands are handled in order

        await stack.until("the marker's hold", lambda: any(
            isinstance(e, r.CollateralHeld) and e.order_id == marker.order_id
            for e in stack.seen["collateral.events"]))
        assert stack.balances()[("A", "USD")][1] < D(100), "the repeat was funded again"
        last = stack.last_report(sell.order_id)
        assert last is not None and last.remaining_quantity == D(2), "the seller traded with the repeat"
        assert stack.double_settlements() == []
        assert stack.balances()[("A", "BTC")][0] == D(1)
    finally:
        await stack.stop()


async def test_collateral_lets_go_of_expired_order_ids(infra: Infra, tmp_path: Path) -> None:
    stack = Stack(infra.kafka_bootstrap, tmp_path,
                  env={"collateral": {"ORDERSTREAM_COLLATERAL_ORDER_MEMORY_S": "2"}})

    async def documents() -> int:
        url = f"http://127.0.0.1:{stack.ports['collateral']}/healthz"
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            count: int = (await resp.json())["documents"]
            return count

    async def refused(n: int) -> list[r.SubmitOrder]:  # Z has no funds: each order leaves a marker only
        orders = [await stack.place(stack.order("Z", "BTC-USD", "BUY", "1", "100")) for _ in range(n)]
        for o in orders:
            await stack.status(o.order_id, "REJECTED")
        return orders

    try:
        await stack.start([instrument("BTC-USD")])
        first = await refused(5)
        before = await documents()
        await asyncio.sleep(2.5)
        await refused(1)  # its step deletes the expired markers of its partition
        assert await documents() == before - 5 + 1

        def refusals() -> int:
            return sum(1 for e in stack.seen["order.events"]
                       if isinstance(e, r.OrderRejected) and e.order_id == first[0].order_id)

        assert refusals() == 1
        await stack.place(first[0])  # so a repeat this late is decided again (and refused again)
        await stack.until("a second refusal", lambda: refusals() == 2)
    finally:
        await stack.stop()

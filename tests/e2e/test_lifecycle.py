"""End to end on the real broker: collateral, router, execution and the matcher make orders real."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal as D
from pathlib import Path

import aiohttp
import pytest

from orderstream.common import records as r
from tests.conftest import Infra
from tests.e2e.stack import Stack, instrument

pytestmark = pytest.mark.integration


async def test_two_accounts_cross_and_every_path_of_an_order(infra: Infra, tmp_path: Path) -> None:
    stack = Stack(
        infra.kafka_bootstrap,
        tmp_path,
        router_env={
            "ORDERSTREAM_ROUTER_ACCOUNT_LIMITS": json.dumps({"A": {"max_order_notional": "50000"}}),
            # a flaky venue: a third of its calls fail and its event stream keeps dropping, so
            # orders fill only thanks to retries and reconciliation by status
            "ORDERSTREAM_ROUTER_MOCK_VENUES": json.dumps(
                {"MOCK": {"failure_rate": 0.3, "disconnect_rate": 0.5, "disconnect_s": 0.2, "seed": 1}}
            ),
            "ORDERSTREAM_ROUTER_RECONCILE_INTERVAL_S": "0.5",
        },
    )
    try:
        await stack.start(
            [instrument("BTC-USD"), instrument("MOCK-USD", venue="MOCK", tick="0.01", lot="0.01")]
        )
        await stack.deposit("A", "USD", "100000")
        await stack.deposit("B", "BTC", "10")
        await stack.deposit("B", "USD", "1000")
        await stack.until("deposits", lambda: len(stack.balances()) == 3)

        # two funded accounts cross: B rests (maker), A takes (taker)
        sell = await stack.place(stack.order("B", "BTC-USD", "SELL", "2", "30000"))
        await stack.status(sell.order_id, "ACCEPTED")
        buy = await stack.place(stack.order("A", "BTC-USD", "BUY", "1.5", "30000"))
        done = await stack.status(buy.order_id, "FILLED")
        assert (done.filled_quantity, done.average_price, done.fees, done.fee_asset) == (
            D("1.5"),
            D(30000),
            D(90),
            "USD",
        )
        part = await stack.status(sell.order_id, "PARTIALLY_FILLED")
        assert (part.remaining_quantity, part.fees, part.last_liquidity) == (
            D("0.5"),
            D(45),
            r.Liquidity.MAKER,
        )
        await stack.until("settlement", lambda: stack.balances().get(("B", "USD")) == (D(45955), D(0)))
        assert stack.balances()[("A", "USD")] == (D(54910), D(0))
        assert stack.balances()[("A", "BTC")] == (D("1.5"), D(0))
        assert stack.balances()[("B", "BTC")] == (D(8), D("0.5"))

        # a cancel releases the hold
        await stack.cancel(sell)
        await stack.status(sell.order_id, "CANCELED")
        await stack.until("release", lambda: stack.balances()[("B", "BTC")] == (D("8.5"), D(0)))

        # an unfunded order is rejected and the client hears why
        broke = await stack.place(stack.order("A", "BTC-USD", "BUY", "2", "30000"))
        rej = await stack.status(broke.order_id, "REJECTED")
        assert rej.reason == "INSUFFICIENT_FUNDS" and rej.side == r.Side.BUY and rej.quantity == D(2)

        # a risk limit rejects (A's notional limit is 50,000); the hold taken for it comes back
        big = await stack.place(stack.order("A", "BTC-USD", "BUY", "1.8", "29000"))
        assert (await stack.status(big.order_id, "REJECTED")).reason == "MAX_ORDER_NOTIONAL"
        await stack.until("risk release", lambda: stack.balances()[("A", "USD")] == (D(54910), D(0)))

        # a kill switch on the symbol stops new orders, and lifting it lets them through again
        await stack.send(
            "risk.commands",
            "SYMBOL:BTC-USD",
            r.SetKillSwitch(
                command_id="k1",
                ts_event=time.time_ns(),
                scope="SYMBOL",
                target="BTC-USD",
                engaged=True,
                reason="test",
            ),
        )
        await asyncio.sleep(1.5)
        stopped = await stack.place(stack.order("A", "BTC-USD", "BUY", "0.1", "20000"))
        assert (await stack.status(stopped.order_id, "REJECTED")).reason == "KILL_SWITCH"
        await stack.send(
            "risk.commands",
            "SYMBOL:BTC-USD",
            r.SetKillSwitch(
                command_id="k2",
                ts_event=time.time_ns(),
                scope="SYMBOL",
                target="BTC-USD",
                engaged=False,
                reason="ok",
            ),
        )
        await asyncio.sleep(1.5)

        # an order routed to the mock venue fills through the adapter (two partial fills)
        ext = await stack.place(stack.order("A", "MOCK-USD", "BUY", "2", "10"))
        filled = await stack.status(ext.order_id, "FILLED")
        assert (filled.venue, filled.filled_quantity, filled.fees) == ("MOCK", D(2), D("0.04"))
        assert [x.status.value for x in stack.reports(ext.order_id)] == [
            "ACCEPTED",
            "PARTIALLY_FILLED",
            "FILLED",
        ]

        # the venue failed a call and dropped its stream: the retry and the reconciliation did it
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{stack.ports['router']}/healthz") as resp,
        ):
            assert (await resp.json())["venue_retries"]["MOCK"] >= 1

        # a basket fills across legs: one on the matcher, one at the mock venue
        await stack.place(stack.order("B", "BTC-USD", "SELL", "0.1", "30000"))
        n = stack.ids()
        basket = r.SubmitBasket(
            command_id=f"bk-{n}",
            ts_event=time.time_ns(),
            account_id="A",
            order_id=f"b-{n}",
            client_order_id=f"cb-{n}",
            quantity=D(2),
            time_in_force="GTC",
            legs=[
                r.BasketLeg(symbol="BTC-USD", side="BUY", weight=D("0.05"), price=D(30000)),
                r.BasketLeg(symbol="MOCK-USD", side="BUY", weight=D("1.5"), price=D(10)),
            ],
        )
        await stack.send("order.commands", "A", basket)
        result = await stack.until(
            "basket",
            lambda: next((b for b in stack.seen["basket.events"] if b.order_id == basket.order_id), None),
        )
        assert (result.complete, result.filled_units, result.average_price_per_unit) == (True, D(2), D(1515))
        assert [leg.filled_quantity for leg in result.legs] == [D("0.1"), D(3)]

        # settled exactly: balances, fees, positions and P&L
        await stack.until("final balances", lambda: stack.balances().get(("A", "MOCK")) == (D(5), D(0)))
        await stack.until("B settled", lambda: stack.balances()[("B", "USD")] == (D(48952), D(0)))
        assert stack.balances()[("A", "USD")] == (D("51853.9"), D(0))
        assert stack.balances()[("A", "BTC")] == (D("1.6"), D(0))
        assert stack.balances()[("B", "BTC")] == (D("8.4"), D(0))
        positions = {(p.account_id, p.symbol): p for p in stack.seen["execution.positions"]}
        a_btc = positions[("A", "BTC-USD")]
        assert (a_btc.quantity, a_btc.average_cost, a_btc.realized_pnl, a_btc.fees) == (
            D("1.6"),
            D(30000),
            D(0),
            D(96),
        )
        b_btc = positions[("B", "BTC-USD")]
        assert (b_btc.quantity, b_btc.realized_pnl, b_btc.fees) == (D("-1.6"), D(0), D(48))
        assert stack.double_settlements() == []
        assert not stack.seen["order.events.dlq"] and not stack.seen["execution.reports.dlq"]
    finally:
        await stack.stop()

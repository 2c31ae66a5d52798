"""OCO and bracket orders on the real broker, with hard kills of the services that own them.

The matcher links a list's orders inside its own steps (a fill or trigger of one cancels its
siblings before the same match can reach them; a bracket entry's fills place and grow its exits);
collateral funds a list with one pool hold for what it can cost at most. Every check here is on
what the services published: reports, collateral events, balances and fees.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D
from pathlib import Path

import pytest

from orderstream.common import records as r
from tests.conftest import Infra
from tests.e2e.stack import Stack, instrument
from tests.order_lists import leg, order_list

pytestmark = pytest.mark.integration

DEPOSITS = {("T", "BTC"): D(2), ("T", "USD"): D(1000), ("S", "BTC"): D(10), ("B", "USD"): D(100000)}


def conserved(stack: Stack) -> bool:
    """Each asset's balances across the accounts, plus the fees paid, are what was deposited."""
    balances, fees = stack.balances(), stack.fees()
    for asset in ("BTC", "USD"):
        have = sum((sum(v) for (_, a), v in balances.items() if a == asset), D(0)) + fees.get(asset, D(0))
        if have != sum(amount for (_, a), amount in DEPOSITS.items() if a == asset):
            return False
    return True


def held(stack: Stack, account: str, asset: str) -> D:
    return stack.balances().get((account, asset), (D(0), D(0)))[1]


def pool_holds(stack: Stack, list_id: str) -> list[D]:
    return [e.amount for e in stack.seen["collateral.events"]
            if isinstance(e, r.CollateralHeld) and e.order_id == list_id]


async def place_list(stack: Stack, kind: str, *orders: dict[str, object]) -> r.SubmitOrderList:
    lst = order_list(kind, *orders, list_id=f"L-{stack.ids()}")
    lst = lst.model_copy(update={"ts_event": time.time_ns()})
    await stack.send("order.commands", "T", lst)
    return lst


async def cancel(stack: Stack, account: str, order_id: str) -> None:
    await stack.send("order.commands", account, r.CancelOrder(
        command_id=f"cx-{stack.ids()}", ts_event=time.time_ns(), account_id=account, order_id=order_id,
        client_order_id=order_id, symbol="BTC-USD"))


async def restart(stack: Stack, service: str) -> None:
    stack.kill(service)
    await asyncio.sleep(0.5)
    await stack.start_service(service)


async def test_oco_and_bracket_races_across_kills_keep_the_ledger_exact(infra: Infra, tmp_path: Path) -> None:
    stack = Stack(infra.kafka_bootstrap, tmp_path)
    try:
        await stack.start([instrument("BTC-USD")])
        for (acct, asset), amount in DEPOSITS.items():
            await stack.deposit(acct, asset, str(amount))
        await stack.until("deposits", lambda: len(stack.balances()) == len(DEPOSITS))

        # 1. An OCO of two sell limits, both within reach of one sweep: one trades, the other goes,
        #    and collateral held one BTC for the pair, not two.
        oco = await place_list(stack, "OCO", leg("SELL", "LIMIT", "1", "101"),
                               leg("SELL", "LIMIT", "1", "102"))
        a, b = f"{oco.order_id}/0", f"{oco.order_id}/1"
        await stack.status(a, "ACCEPTED")
        await stack.status(b, "ACCEPTED")
        assert pool_holds(stack, oco.order_id) == [D(1)] and held(stack, "T", "BTC") == 1
        sweep = await stack.place(stack.order("B", "BTC-USD", "BUY", "2", "103"))
        await stack.status(a, "FILLED")
        gone = await stack.status(b, "CANCELED")
        assert gone.reason == "LINKED_ORDER_EXECUTED" and gone.filled_quantity == 0
        await cancel(stack, "T", b)  # a cancel that crosses the fill: refused, nothing moves
        await stack.status(sweep.order_id, "PARTIALLY_FILLED")
        await cancel(stack, "B", sweep.order_id)
        await stack.status(sweep.order_id, "CANCELED")

        # 2. A bracket, with the matcher and collateral killed mid-way: its exits are placed for the
        #    entry's first fill, grown by its second, and the take-profit's fill ends it.
        bracket = await place_list(stack, "BRACKET", leg("BUY", "LIMIT", "1", "100"),
                                   leg("SELL", "LIMIT", "1", "110"),
                                   leg("SELL", "STOP_MARKET", "1", stop="95"))
        entry, tp, sl = (f"{bracket.order_id}/{n}" for n in range(3))
        await stack.status(entry, "ACCEPTED")
        await stack.place(stack.order("S", "BTC-USD", "SELL", "0.4", "100"))
        await stack.status(tp, "ACCEPTED")
        await stack.status(sl, "ACCEPTED")
        assert stack.last_report(tp).quantity == D("0.4")  # type: ignore[union-attr]
        await restart(stack, "matcher")
        await stack.place(stack.order("S", "BTC-USD", "SELL", "0.6", "100"))
        await stack.status(entry, "FILLED")
        await stack.until("the exits grown to the whole entry", lambda: all(
            (rep := stack.last_report(x)) is not None and rep.quantity == 1 for x in (tp, sl)))
        await restart(stack, "collateral")
        await stack.place(stack.order("B", "BTC-USD", "BUY", "1", "110"))
        await stack.status(tp, "FILLED")
        assert (await stack.status(sl, "CANCELED")).reason == "LINKED_ORDER_EXECUTED"

        # 3. A bracket whose entry is partly filled and then cancelled keeps its exits for what filled;
        #    cancelling the list takes them.
        late = await place_list(stack, "BRACKET", leg("BUY", "LIMIT", "1", "99"),
                                leg("SELL", "LIMIT", "1", "120"), leg("SELL", "STOP_MARKET", "1", stop="90"))
        entry2, tp2, sl2 = (f"{late.order_id}/{n}" for n in range(3))
        await stack.status(entry2, "ACCEPTED")
        await stack.place(stack.order("S", "BTC-USD", "SELL", "0.3", "99"))
        await stack.status(tp2, "ACCEPTED")
        await cancel(stack, "T", entry2)
        await stack.status(entry2, "CANCELED")
        await stack.until("the exits' pool holds the 0.3 bought", lambda: held(stack, "T", "BTC") == D("0.3"))
        assert stack.last_report(tp2).status == r.OrderStatus.ACCEPTED  # type: ignore[union-attr]
        await cancel(stack, "T", late.order_id)
        await stack.status(tp2, "CANCELED")
        await stack.status(sl2, "CANCELED")

        def settled() -> bool:
            return conserved(stack) and held(stack, "T", "BTC") == 0 and held(stack, "T", "USD") == 0
        await stack.until("a conserved ledger with nothing held for the lists", settled)
        # T: sold 1 at 101 (maker), bought 1 at 100 and sold it at 110 (maker), bought 0.3 at 99 (maker)
        free = {asset: stack.balances()[("T", asset)][0] for asset in ("BTC", "USD")}
        assert free == {"BTC": D("1.3"), "USD": D(1000) + D("100.899") - D("100.1") + D("109.89")
                        - D("29.7297")}
        assert stack.double_settlements() == [] and stack.dead_letters() == {}
        assert dict(stack.runs) == {"matcher": 2, "collateral": 2, "router": 1, "execution": 1}
    finally:
        await stack.stop()

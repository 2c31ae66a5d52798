"""Pure cores of execution and router: order state machine, positions, risk, baskets, venue adapter."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orderstream.common import records as r
from orderstream.common.state import Changes
from orderstream.common.trading import Position
from orderstream.execution.domain.order import TRANSITIONS, IllegalTransition, OrderState
from orderstream.execution.domain.ticker import SymbolStats
from orderstream.router.app import load_exposure, store_exposure
from orderstream.router.domain.basket import finished, on_child_report, open_basket
from orderstream.router.domain.risk import Exposure, Limits
from orderstream.router.fixvenue import FixVenue, FixVenueConfig
from orderstream.router.mockvenue import MockVenue, MockVenueConfig
from orderstream.router.venue import Resilient, VenueError, VenueOrder
from tests.e2e.stack import instrument
from tests.unit.test_ledger import report, submit

BTC = instrument("BTC-USD")
HEAD = {"account_id": "A", "order_id": "o", "client_order_id": "c", "symbol": "BTC-USD"}


def accepted(seq: int = 1) -> r.OrderAccepted:
    return r.OrderAccepted(
        event_id=f"e{seq}",
        ts_event=seq,
        sequence=seq,
        side="BUY",
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=D(2),
        price=D(100),
        venue="INTERNAL",
        **HEAD,
    )


def filled(seq: int, qty: str, leaves: str, liquidity: str = "MAKER") -> r.OrderFilled:
    return r.OrderFilled(
        event_id=f"e{seq}",
        ts_event=seq,
        sequence=seq,
        trade_id=f"t{seq}",
        side="BUY",
        fill_price=D(100),
        fill_quantity=D(qty),
        leaves_quantity=D(leaves),
        liquidity=liquidity,
        **HEAD,
    )


def canceled(seq: int) -> r.OrderCanceled:
    return r.OrderCanceled(
        event_id=f"e{seq}",
        ts_event=seq,
        sequence=seq,
        canceled_quantity=D(1),
        reason="CLIENT_REQUEST",
        **HEAD,
    )


def test_fills_move_the_order_through_the_table_with_exact_reports() -> None:
    state = OrderState.first(accepted())
    rep, _ = state.apply(accepted(), BTC)
    assert rep is not None and rep.status == r.OrderStatus.ACCEPTED
    rep, fill = state.apply(filled(2, "0.5", "1.5"), BTC)
    assert rep is not None and fill is not None
    assert (rep.status, rep.filled_quantity, rep.remaining_quantity, rep.fees, rep.last_liquidity) == (
        r.OrderStatus.PARTIALLY_FILLED,
        D("0.5"),
        D("1.5"),
        D("0.05"),
        r.Liquidity.MAKER,
    )
    rep, _ = state.apply(filled(3, "1.5", "0", "TAKER"), BTC)
    assert rep is not None and (rep.status, rep.average_price, rep.fees) == (
        r.OrderStatus.FILLED,
        D(100),
        D("0.35"),
    )
    assert state.terminal


def test_a_repeat_is_ignored_and_an_illegal_move_raises() -> None:
    state = OrderState.first(accepted())
    state.apply(accepted(), BTC)
    assert state.apply(accepted(), BTC) == (None, None)
    state.apply(canceled(2), BTC)
    late = r.OrderRejected(
        event_id="late",
        ts_event=3,
        sequence=0,
        reason="UNKNOWN_ORDER",
        message="m",
        rejected_command="CancelOrder",
        **HEAD,
    )
    rep, _ = state.apply(late, BTC)  # a cancel that came too late is answered, the order stays closed
    assert rep is not None and (rep.status, rep.reason) == (r.OrderStatus.CANCELED, "UNKNOWN_ORDER")
    with pytest.raises(IllegalTransition):
        state.apply(filled(3, "1", "0"), BTC)
    with pytest.raises(IllegalTransition):
        OrderState.first(filled(1, "1", "1"))


def test_a_refused_replace_keeps_the_status_and_says_why() -> None:
    state = OrderState.first(accepted())
    state.apply(accepted(), BTC)
    rej = r.OrderRejected(
        event_id="x",
        ts_event=2,
        sequence=2,
        reason="INVALID_PRICE",
        message="m",
        rejected_command="ReplaceOrder",
        **HEAD,
    )
    rep, _ = state.apply(rej, BTC)
    assert rep is not None and (rep.status, rep.reason) == (r.OrderStatus.ACCEPTED, "INVALID_PRICE")
    assert (r.OrderStatus.FILLED, "OrderFilled") not in TRANSITIONS


def test_positions_average_cost_realized_pnl_and_flip() -> None:
    p = Position()
    p.fill(r.Side.BUY, D(2), D(100), D("0.2"))
    p.fill(r.Side.BUY, D(2), D(110), D("0.2"))
    assert (p.quantity, p.average_cost) == (D(4), D(105))
    assert p.fill(r.Side.SELL, D(5), D(120), D("0.6")) == D(60)  # closes 4 at +15, opens 1 short at 120
    assert (p.quantity, p.average_cost, p.realized, p.fees, p.unrealized(D(100))) == (
        D(-1),
        D(120),
        D(60),
        D(1),
        D(20),
    )


def test_ticker_and_candles_count_each_trade_once() -> None:
    stats = SymbolStats("BTC-USD")
    minute = 60 * 10**9
    trades = [
        r.Trade(
            trade_id=f"t{i}",
            ts_event=minute * 1000 + i * 20 * 10**9,
            symbol="BTC-USD",
            price=D(p),
            quantity=D(1),
            aggressor_side="BUY",
            sequence=i,
        )
        for i, p in enumerate([100, 105, 95, 101], 1)
    ]
    outs = [stats.on_trade(t) for t in trades]
    assert stats.on_trade(trades[-1]) is None
    ticker, candle = outs[-1]  # type: ignore[misc]
    assert (ticker.open, ticker.high, ticker.low, ticker.last_price, ticker.trades) == (
        D(100),
        D(105),
        D(95),
        D(101),
        4,
    )
    assert (candle.open, candle.close, candle.trades) == (
        D(95),
        D(101),
        2,
    )  # the 4th minute holds trades 3 and 4


LIMITS = Limits(D(10), D(1000), 2, D(5), D(50))


def test_each_risk_rule_rejects_with_its_reason() -> None:
    x = Exposure()
    assert x.check(submit("o", "A", "BUY", "1", "100"), LIMITS, BTC, None, "account A")[0] == "KILL_SWITCH"
    assert x.check(submit("o", "A", "BUY", "11", "1"), LIMITS, BTC, None, None)[0] == "MAX_ORDER_QUANTITY"
    assert x.check(submit("o", "A", "BUY", "2", "600"), LIMITS, BTC, None, None)[0] == "MAX_ORDER_NOTIONAL"
    assert x.check(submit("o", "A", "BUY", "1", None), LIMITS, BTC, D(2000), None)[0] == "MAX_ORDER_NOTIONAL"
    assert x.check(submit("o", "A", "BUY", "1", "1"), LIMITS, None, None, None)[0] == "UNKNOWN_SYMBOL"
    x.opened(submit("a", "A", "BUY", "3", "100"))
    assert x.check(submit("b", "A", "BUY", "3", "100"), LIMITS, BTC, None, None)[0] == "MAX_POSITION"
    assert x.check(submit("b", "A", "SELL", "3", "100"), LIMITS, BTC, None, None) is None
    x.opened(submit("b", "A", "SELL", "1", "100"))
    assert x.check(submit("c", "A", "SELL", "1", "100"), LIMITS, BTC, None, None)[0] == "MAX_OPEN_ORDERS"


def totals_of(x: Exposure) -> tuple[int, dict[str, D]]:
    """The totals recomputed from the entries (all of them in memory)."""
    pending: dict[str, D] = {}
    for sym, side, leaves, _ in x.open.values():
        pending[f"{sym}|{side}"] = pending.get(f"{sym}|{side}", D(0)) + D(leaves)
    return len(x.open), {k: v for k, v in pending.items() if v}


def test_the_totals_follow_every_open_order_and_the_rules_read_them_from_a_partial_load() -> None:
    x = Exposure()
    a, b, c = (submit(i, "A", side, qty, "100") for i, side, qty in
               (("a", "BUY", "3"), ("b", "BUY", "1"), ("c", "SELL", "2")))
    for o in (a, b, c, b):  # b twice: counted once
        x.opened(o)
    x.unopened("c")
    assert x.on_report(report(a, 1, "PARTIALLY_FILLED", D(1), D(2), (D(1), D(100), "t1")))
    assert (x.open_count, x.pending) == totals_of(x) == (2, {"BTC-USD|BUY": D(3)})
    assert x.on_report(report(b, 1, "CANCELED", D(0), D(1)))
    assert (x.open_count, x.pending) == totals_of(x) == (1, {"BTC-USD|BUY": D(2)})

    # stored with one document per open order; a step that loads none still sees the totals
    docs: dict[str, Any] = {}
    view = Changes(SimpleNamespace(docs=lambda: docs))  # type: ignore[arg-type]
    store_exposure(view, "A", x, ["a", "b"])
    docs.update({k: v for k, v in view.written.items() if v is not None})
    assert set(docs) == {"x|A", "x|A|a"}
    partial = load_exposure(Changes(SimpleNamespace(docs=lambda: docs)), "A", [])  # type: ignore[arg-type]
    assert partial.open == {} and partial.open_count == 1
    # buying 3 more could bring the position to 1 (filled) + 2 (pending) + 3 = 6, above 5
    assert partial.check(submit("d", "A", "BUY", "3", "100"), LIMITS, BTC, None, None)[0] == "MAX_POSITION"
    partial.opened(submit("d", "A", "SELL", "1", "100"))
    refusal = partial.check(submit("e", "A", "SELL", "1", "100"), LIMITS, BTC, None, None)
    assert refusal is not None and refusal[0] == "MAX_OPEN_ORDERS"


def test_an_exposure_stored_before_the_totals_gets_them_from_its_entries() -> None:
    x = Exposure()
    for o in (submit("a", "A", "BUY", "3", "100"), submit("b", "A", "SELL", "1", "100")):
        x.opened(o)
    legacy = {k: v for k, v in x.to_doc().items() if k not in ("open_count", "pending")}
    again = Exposure.from_doc(legacy)
    assert (again.open_count, again.pending) == (2, {"BTC-USD|BUY": D(3), "BTC-USD|SELL": D(1)})


def test_the_daily_loss_limit_counts_realized_losses_of_the_day() -> None:
    x = Exposure()
    buy, sell = submit("a", "A", "BUY", "1", "100"), submit("b", "A", "SELL", "1", "40")
    for o, price in ((buy, D(100)), (sell, D(40))):
        x.opened(o)
        assert x.on_report(report(o, 1, "FILLED", D(1), D(0), (D(1), price, f"t{o.order_id}")))
    assert x.day_pnl == D(-60) and x.open == {}
    later = submit("c", "A", "BUY", "1", "1").model_copy(update={"ts_event": 5})
    assert x.check(later, LIMITS, BTC, None, None)[0] == "DAILY_LOSS_LIMIT"


def test_a_basket_reports_units_and_price_per_unit_once_every_leg_is_done() -> None:
    basket = r.SubmitBasket(
        command_id="k",
        ts_event=1,
        account_id="A",
        order_id="b",
        client_order_id="cb",
        quantity=D(2),
        time_in_force="IOC",
        legs=[
            r.BasketLeg(symbol="BTC-USD", side="BUY", weight=D(1), price=D(100)),
            r.BasketLeg(symbol="ETH-USD", side="SELL", weight=D("0.5"), price=D(10)),
        ],
    )
    doc = open_basket(basket)
    leg0 = submit("b/0", "A", "BUY", "2", "100")
    leg1 = submit("b/1", "A", "SELL", "1", "10").model_copy(update={"symbol": "ETH-USD"})
    on_child_report(doc, 0, report(leg0, 1, "FILLED", D(2), D(0), (D(2), D(100), "t")))
    assert finished(doc, "A", 2) is None
    on_child_report(doc, 1, report(leg1, 1, "CANCELED", D("0.5"), D(0), (D("0.5"), D(12), "u")))
    done = finished(doc, "A", 3)
    assert done is not None and not done.complete
    assert (done.filled_units, done.average_price_per_unit) == (
        D(1),
        D(94),
    )  # min(2/1, 0.5/0.5); 100 - 0.5*12
    assert [leg.status for leg in done.legs] == ["FILLED", "CANCELED"]


async def test_the_adapter_retries_transient_failures_and_recovers_lost_events_by_status() -> None:
    venue = MockVenue(
        "MOCK",
        MockVenueConfig(
            latency_ms=1, failure_rate=0.5, partial_fills=3, disconnect_rate=1.0, disconnect_s=0.05, seed=3
        ),
    )
    adapter = Resilient(venue, attempts=20, base_delay_s=0.001)
    await adapter.place(VenueOrder("o1", "A", "c1", "X-USD", "BUY", D(3), D(10)))
    await asyncio.sleep(0.1)
    assert adapter.retries > 0
    events = await adapter.status("o1")
    assert [e.kind for e in events] == ["ACCEPTED", "FILLED", "FILLED", "FILLED"]
    assert sum((e.quantity for e in events if e.quantity), D(0)) == D(3) and events[-1].leaves == 0
    assert venue.queue.qsize() < 4  # the stream dropped some: status is how the router gets them
    with pytest.raises(VenueError) as lost:
        await adapter.status("never-placed")
    assert lost.value.code == "UNKNOWN_ORDER" and not lost.value.transient


async def test_a_venue_that_stays_down_gives_venue_unavailable() -> None:
    adapter = Resilient(MockVenue("MOCK", MockVenueConfig(latency_ms=0, failure_rate=1.0)), 3, 0.001)
    with pytest.raises(VenueError) as down:
        await adapter.place(VenueOrder("o1", "A", "c1", "X-USD", "BUY", D(1), D(10)))
    assert down.value.code == "UNAVAILABLE" and adapter.retries == 2
    assert down.value.ambiguous  # a busy venue may have acted on a try: the router must ask it


async def test_a_fix_venue_whose_session_is_down_refuses_plainly(tmp_path: Path) -> None:
    """Orders never left: the refusal is certain (VENUE_UNAVAILABLE at once), not a call to ask
    the venue about (which would end the order as lost)."""
    fix = FixVenue("FIX", FixVenueConfig(port=1), tmp_path)  # never resumed: never logged on
    adapter = Resilient(fix, 3, 0.001)
    with pytest.raises(VenueError) as down:
        await adapter.place(VenueOrder("o1", "A", "c1", "X-USD", "BUY", D(1), D(10)))
    assert (down.value.code, down.value.ambiguous, adapter.retries) == ("UNAVAILABLE", False, 2)
    assert "not logged on" in down.value.message
    with pytest.raises(VenueError) as never:
        await adapter.status("o1")
    assert never.value.code == "UNKNOWN_ORDER"

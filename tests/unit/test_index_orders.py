"""Index orders by collateral amount: the fitting core (common/index.py) and the router's rounds
(router/domain/index.py), without I/O."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderstream.common import records as r
from orderstream.common.index import (
    CANCELED,
    COMPLETED,
    WORKING,
    Leg,
    Limit,
    NotAnIndex,
    Pricing,
    collateral_asset,
    fit,
    unit_step,
    units_done,
    walk,
)
from orderstream.common.trading import cost, fee
from orderstream.router.domain import index


def instrument(
    symbol: str, lot: str, tick: str = "0.01", min_notional: str = "1", quote: str = "USD"
) -> r.Instrument:
    return r.Instrument(
        symbol=symbol,
        base_asset=symbol.split("-")[0],
        quote_asset=quote,
        tick_size=D(tick),
        lot_size=D(lot),
        min_quantity=D(lot),
        min_notional=D(min_notional),
        maker_fee=D("0.001"),
        taker_fee=D("0.002"),
        venue="INTERNAL",
        enabled=True,
    )


INSTRUMENTS = {
    "BTC-USD": instrument("BTC-USD", "0.0001", "0.5"),
    "ETH-USD": instrument("ETH-USD", "0.001", "0.05"),
    "XRP-USD": instrument("XRP-USD", "1", "0.0001"),
}
LEGS = [Leg("BTC-USD", D("0.01")), Leg("ETH-USD", D("0.1")), Leg("XRP-USD", D(10))]
BOOKS = {
    "BTC-USD": [(D(30000), D("0.05")), (D("30010.5"), D(1))],
    "ETH-USD": [(D(2000), D(2))],
    "XRP-USD": [(D("0.5"), D(1000)), (D("0.6"), D(1000))],
}


def test_the_unit_step_keeps_every_leg_on_its_lot_size() -> None:
    assert unit_step(LEGS, INSTRUMENTS) == D("0.1")  # XRP: 1 / 10; BTC: 0.0001 / 0.01 = 0.01; ETH: 0.01
    odd = [Leg("BTC-USD", D(3)), Leg("ETH-USD", D("0.002"))]
    step = unit_step(odd, INSTRUMENTS)
    assert step == D("0.5")  # BTC: 3u on 0.0001 and u a decimal: 0.0001 steps; ETH: 0.001 / 0.002
    for leg in odd:
        assert (step * leg.weight) % INSTRUMENTS[leg.symbol].lot_size == 0


def test_a_quote_walks_the_asks_and_charges_the_taker_fee() -> None:
    q = fit(LEGS, D(10000), BOOKS, INSTRUMENTS, Pricing.TAKER)
    # 19.7 units: BTC 0.197 (0.05 at 30000, 0.147 at 30010.5), ETH 1.97, XRP 197
    assert q.units == D("19.7") and q.limited_by == Limit.FUNDS
    btc, eth, xrp = q.legs
    assert (btc.quantity, btc.notional, btc.limit_price) == (D("0.197"), D("5911.5435"), D("30010.5"))
    assert btc.fee == fee(btc.notional, D("0.002")) and btc.cost == btc.notional + btc.fee
    assert (eth.quantity, eth.notional, xrp.quantity, xrp.notional) == (D("1.97"), D(3940), D(197), D("98.5"))
    assert q.cost == sum(x.cost for x in q.legs) and q.unspent == D(10000) - q.cost
    assert q.cost <= D(10000) < fit(LEGS, D(10000), BOOKS, INSTRUMENTS, Pricing.TAKER, None).cost + 1000
    more = fit(LEGS, D(10**9), BOOKS, INSTRUMENTS, Pricing.TAKER)
    assert more.units == D(20) and more.limited_by == Limit.LIQUIDITY  # ETH holds 2: 20 units


def test_a_round_plans_at_the_worst_level_walked_so_children_never_cost_more_than_the_amount() -> None:
    q = fit(LEGS, D(10000), BOOKS, INSTRUMENTS, Pricing.LIMIT)
    for lf in q.legs:
        need = cost(INSTRUMENTS[lf.symbol], r.Side.BUY, r.OrderType.LIMIT, lf.quantity, lf.limit_price, None)
        assert need is not None and lf.cost == need[1]
    assert q.cost <= D(10000)


def test_legs_priced_in_other_assets_or_unknown_are_named() -> None:
    mixed = {**INSTRUMENTS, "ETH-EUR": instrument("ETH-EUR", "0.001", quote="EUR")}
    with pytest.raises(NotAnIndex) as e:
        collateral_asset([Leg("BTC-USD", D(1)), Leg("ETH-EUR", D(1))], mixed)
    assert e.value.field == "legs"
    with pytest.raises(NotAnIndex) as e:
        collateral_asset([Leg("BTC-USD", D(1)), Leg("DOGE-USD", D(1))], mixed)
    assert e.value.field == "legs.1.symbol"
    assert collateral_asset(LEGS, INSTRUMENTS) == "USD"


def test_nothing_fits_says_why_funds_or_liquidity() -> None:
    tiny = fit(LEGS, D(1), BOOKS, INSTRUMENTS, Pricing.TAKER)
    assert (tiny.units, tiny.limited_by, tiny.unspent) == (D(0), Limit.FUNDS, D(1))
    empty = fit(LEGS, D(10000), {**BOOKS, "ETH-USD": []}, INSTRUMENTS, Pricing.TAKER)
    assert (empty.units, empty.limited_by) == (D(0), Limit.LIQUIDITY)
    capped = fit([Leg("BTC-USD", D("0.01"), price_cap=D(29000))], D(10000), BOOKS, INSTRUMENTS, Pricing.TAKER)
    assert (capped.units, capped.limited_by) == (D(0), Limit.LIQUIDITY)


def test_the_minimum_notional_holds_back_units_too_small_for_a_child() -> None:
    ins = {**INSTRUMENTS, "XRP-USD": instrument("XRP-USD", "1", "0.0001", min_notional="10")}
    q = fit([Leg("XRP-USD", D(1))], D("100"), BOOKS, ins, Pricing.TAKER)
    assert q.units == D(199)  # 199 XRP: 1000 at 0.5, the fee rounds the 200th out
    assert fit([Leg("XRP-USD", D(1))], D("9"), BOOKS, ins, Pricing.TAKER).units == 0  # 17 XRP: under 10


def test_a_top_up_asks_each_leg_for_what_it_lacks() -> None:
    legs = [
        Leg("BTC-USD", D("0.01"), filled=D("0.03")),
        Leg("ETH-USD", D("0.1"), filled=D("0.1")),
        Leg("XRP-USD", D(10), filled=D(20)),
    ]
    assert units_done(legs, D("0.1")) == D(1)
    q = fit(legs, D(1000), BOOKS, INSTRUMENTS, Pricing.LIMIT)
    want = {leg.symbol: max(q.units * leg.weight - leg.filled, D(0)) for leg in legs}
    assert {lf.symbol: lf.quantity for lf in q.legs} == want
    assert q.units > 1 and q.cost <= 1000


books = st.lists(
    st.tuples(st.integers(1, 2000), st.integers(1, 500)), min_size=0, max_size=5, unique_by=lambda x: x[0]
).map(lambda levels: [(D(p) / 4, D(q) / 100) for p, q in sorted(levels)])


@settings(max_examples=200, deadline=None)
@given(
    amount=st.integers(1, 10**7).map(lambda n: D(n) / 100),
    btc=books,
    eth=books,
    weights=st.tuples(st.integers(1, 50), st.integers(1, 50)),
    pricing=st.sampled_from(list(Pricing)),
)
def test_units_never_cost_more_than_the_amount_and_one_more_step_would(
    amount: D, btc: list[tuple[D, D]], eth: list[tuple[D, D]], weights: tuple[int, int], pricing: Pricing
) -> None:
    ins = {"BTC-USD": instrument("BTC-USD", "0.01", "0.25"), "ETH-USD": instrument("ETH-USD", "0.01", "0.25")}
    legs = [Leg("BTC-USD", D(weights[0]) / 10), Leg("ETH-USD", D(weights[1]) / 10)]
    q = fit(legs, amount, {"BTC-USD": btc, "ETH-USD": eth}, ins, pricing)
    assert q.cost <= amount and q.unspent == amount - q.cost >= 0
    assert q.units % q.step == 0
    for leg, lf in zip(legs, q.legs, strict=True):
        assert lf.quantity == q.units * leg.weight and lf.quantity % ins[leg.symbol].lot_size == 0
        if lf.quantity:
            assert walk({"BTC-USD": btc, "ETH-USD": eth}[leg.symbol], lf.quantity, None) == (
                lf.notional,
                lf.limit_price,
            )
    # one step more: a leg's book is short of it, or it costs more than the amount
    more = q.units + q.step
    walked = [walk({"BTC-USD": btc, "ETH-USD": eth}[leg.symbol], more * leg.weight, None) for leg in legs]
    if all(w is not None for w in walked) and q.units > 0:
        total = D(0)
        for leg, w in zip(legs, walked, strict=True):
            assert w is not None
            inst = ins[leg.symbol]
            if pricing == Pricing.TAKER:
                total += w[0] + fee(w[0], inst.taker_fee)
            else:
                need = cost(inst, r.Side.BUY, r.OrderType.LIMIT, more * leg.weight, w[1], None)
                assert need is not None
                total += need[1]
        assert total > amount


# -- the router's rounds ---------------------------------------------------------------


def submit(amount: str = "10000") -> r.SubmitIndexOrder:
    return r.SubmitIndexOrder(
        command_id="c1",
        ts_event=1,
        account_id="A",
        order_id="INDEX-1",
        client_order_id="i1",
        asset="USD",
        collateral_amount=D(amount),
        legs=[r.IndexLeg(symbol=x.symbol, weight=x.weight, price_cap=None) for x in LEGS],
        quote_id=None,
        max_slippage=None,
    )


def report(
    child: r.SubmitOrder, seq: int, filled: D, price: D | None, status: r.OrderStatus
) -> r.ExecutionReport:
    notional = (price or D(0)) * filled
    return r.ExecutionReport(
        event_id=f"{child.order_id}:{seq}",
        ts_event=7,  # the matcher's time of the child's event
        account_id="A",
        order_id=child.order_id,
        client_order_id=child.client_order_id,
        symbol=child.symbol,
        sequence=seq,
        status=status,
        side=r.Side.BUY,
        order_type=r.OrderType.LIMIT,
        quantity=child.quantity,
        price=child.price,
        filled_quantity=filled,
        remaining_quantity=D(0) if status != r.OrderStatus.ACCEPTED else child.quantity,
        average_price=price,
        last_fill_price=price,
        last_fill_quantity=filled if price else None,
        last_liquidity=r.Liquidity.TAKER if price else None,
        trade_id=f"t{child.order_id}" if price else None,
        fees=fee(notional, D("0.002")),
        fee_asset="USD",
    )


def books_at(seq: int, levels: dict[str, list[tuple[D, D]]] = BOOKS) -> index.Books:
    return {s: (seq, a) for s, a in levels.items()}


def test_a_round_sends_ioc_limit_children_and_allocates_their_fills_leg_by_leg() -> None:
    doc = index.open_index(submit(), unit_step(LEGS, INSTRUMENTS), 1)
    children, fitted = index.plan(doc, books_at(5), INSTRUMENTS, None, 10)
    assert [c.order_id for c in children] == ["INDEX-1/0", "INDEX-1/1", "INDEX-1/2"]
    assert all(c.time_in_force == r.TimeInForce.IOC and c.order_type == r.OrderType.LIMIT for c in children)
    assert [c.price for c in children] == [D("30010.5"), D(2000), D("0.5")]
    assert index.committed(doc) == fitted.cost <= D(10000)
    assert not index.books_moved(doc, books_at(5)) and index.books_moved(doc, books_at(6))  # no report yet
    # BTC fills in full, ETH half, XRP not at all (IOC remainder canceled)
    btc, eth, xrp = children
    assert index.on_child_report(doc, report(btc, 1, btc.quantity, D(30005), r.OrderStatus.FILLED))
    assert not index.on_child_report(doc, report(btc, 1, btc.quantity, D(30005), r.OrderStatus.FILLED))
    assert index.on_child_report(doc, report(eth, 1, D("0.98"), D(2000), r.OrderStatus.CANCELED))
    assert index.open_children(doc) == 1
    assert index.on_child_report(doc, report(xrp, 1, D(0), None, r.OrderStatus.CANCELED))
    assert index.open_children(doc) == 0
    # a snapshot from before the children ended (7) still shows what they took: no round on it
    assert not index.books_moved(doc, books_at(6)) and index.books_moved(doc, books_at(8))
    btc_paid = btc.quantity * 30005
    spent = btc_paid + fee(btc_paid, D("0.002")) + D("1960") + fee(D(1960), D("0.002"))
    event = index.progress(doc, 20)
    assert (event.spent, event.left, event.units, event.sequence) == (spent, D(10000) - spent, D(0), 1)
    assert [x.filled_quantity for x in event.legs] == [btc.quantity, D("0.98"), D(0)]
    # the next round tops up the legs that lack, within what is left
    nxt, fitted = index.plan(doc, books_at(8), INSTRUMENTS, None, 30)
    assert [c.order_id for c in nxt] == ["INDEX-1/4", "INDEX-1/5"]  # round 2: BTC holds enough already
    filled = {x.symbol: x.filled_quantity for x in event.legs}
    assert {c.symbol: c.quantity for c in nxt} == {
        leg.symbol: fitted.units * leg.weight - filled[leg.symbol] for leg in LEGS[1:]
    }
    assert fitted.cost <= index.left(doc)


def test_an_order_whose_left_buys_no_child_completes_and_an_update_never_goes_below_spent() -> None:
    doc = index.open_index(submit("0.5"), unit_step(LEGS, INSTRUMENTS), 1)
    children, _ = index.plan(doc, books_at(1), INSTRUMENTS, None, 10)
    assert children == [] and doc["status"] == COMPLETED and doc["reason"] == "FUNDS"
    doc = index.open_index(submit(), unit_step(LEGS, INSTRUMENTS), 1)
    children, _ = index.plan(doc, books_at(1), INSTRUMENTS, None, 10)
    floor = index.committed(doc)
    assert index.update(doc, D(1)) == floor  # open children were planned within the old amount
    assert doc["status"] == WORKING
    thin = index.open_index(submit(), unit_step(LEGS, INSTRUMENTS), 1)
    children, _ = index.plan(thin, books_at(1, {**BOOKS, "ETH-USD": []}), INSTRUMENTS, None, 10)
    assert children == [] and thin["status"] == WORKING and thin["reason"] == "LIQUIDITY"
    assert CANCELED == "CANCELED"


def test_the_venue_rate_lets_a_round_go_whole_or_not_at_all() -> None:
    rate = index.Rate(5)
    assert rate.take(3, 0.0) and not rate.take(3, 0.0) and rate.take(2, 0.0)
    assert not rate.room(3, 0.5) and rate.take(3, 1.0)


def test_a_parent_closed_before_its_childrens_first_reports_waits_for_each_of_them() -> None:
    """The router's ReleaseParentHold (collateral.commands) can reach collateral before its children's
    reports (execution.reports): with the count of children it created, the pool waits for each."""
    from tests.unit.test_ledger import BTC, funded
    from tests.unit.test_ledger import report as ledger_report
    from tests.unit.test_ledger import submit as ledger_submit

    a = funded("A", USD="1000")
    a.open_pool("P", "P:h", 1, "INDEX", "USD", D(700))
    close = r.ReleaseParentHold(
        command_id="x", ts_event=3, account_id="A", order_id="P", reason="CANCELED", children=1
    )
    assert a.release_parent(close) == [] and a.pools["P"].amount == 700  # its one child is not seen yet
    c0 = ledger_submit("P/0", "A", "BUY", "0.01", "30000")
    done = a.on_report(ledger_report(c0, 1, "FILLED", D("0.01"), D(0), (D("0.01"), D(30000), "t1")), BTC)
    assert [e.amount for e in done if isinstance(e, r.CollateralReleased)] == [D(700) - D("300.6")]
    assert (
        a.pools == {}
        and a.free["USD"] == D(1000) - D("300.6")
        and a.held["USD"] == 0
        and a.free["BTC"] == D("0.01")
    )

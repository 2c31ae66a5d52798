"""The matching core: order types, time in force, priority, self-trade prevention, triggers."""

from __future__ import annotations

import itertools

from orderstream.matcher.domain.book import Book
from orderstream.matcher.domain.model import (
    Accepted,
    BookDelta,
    Canceled,
    Expired,
    Filled,
    Kind,
    NewOrder,
    Reason,
    Rejected,
    Replaced,
    Stp,
    Tif,
    TradePrint,
    Triggered,
)

_ids = itertools.count(1)


def order(is_buy: bool, qty: int, price: int | None = None, acct: str = "A", **kw: object) -> NewOrder:
    n = next(_ids)
    return NewOrder(f"o{n}", acct, f"c{n}", is_buy, qty, price=price, **kw)  # type: ignore[arg-type]


def buy(qty: int, price: int | None = None, acct: str = "A", **kw: object) -> NewOrder:
    return order(True, qty, price, acct, **kw)


def sell(qty: int, price: int | None = None, acct: str = "B", **kw: object) -> NewOrder:
    return order(False, qty, price, acct, **kw)


def of(events: list, cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


def test_limit_orders_rest_then_cross_in_price_time_priority() -> None:
    b = Book("X")
    s1, s2, s3 = sell(5, 101), sell(5, 100), sell(5, 100)
    for s in (s1, s2, s3):
        ev = b.submit(s)
        assert isinstance(ev[0], Accepted) and not of(ev, Filled)
    assert b.depth() == ([], [(100, 10), (101, 5)])
    ev = b.submit(taker := buy(12, 101))
    fills = of(ev, Filled)
    # best price first, then time: s2 before s3 at 100, then s1 at 101
    makers = [(f.order_id, f.price, f.qty) for f in fills if f.maker]
    assert makers == [(s2.order_id, 100, 5), (s3.order_id, 100, 5), (s1.order_id, 101, 2)]
    assert [f.qty for f in fills if f.order_id == taker.order_id] == [5, 5, 2]
    assert fills[-2].leaves == 0 and [f.leaves for f in fills if f.maker][-1] == 3
    assert b.depth() == ([], [(101, 3)])
    prints = of(ev, TradePrint)
    assert [p.md_seq for p in prints] == [4, 5, 6]  # 3 deltas before, then the trades
    delta = of(ev, BookDelta)[0]
    assert delta.md_seq == 7 and set(delta.changes) == {(False, 100, 0), (False, 101, 3)}


def test_per_order_sequence_numbers_have_no_gaps() -> None:
    b = Book("X")
    m = sell(10, 100)
    b.submit(m)
    b.submit(buy(3, 100))
    ev = b.submit(buy(3, 100)) + b.cancel(m.order_id, "B")
    seqs = [e.seq for e in ev if getattr(e, "order_id", None) == m.order_id]
    assert seqs == [3, 4]  # accepted=1, first fill=2


def test_market_order_stops_at_the_protection_band() -> None:
    b = Book("X", band_ppm=10_000)  # 1%
    for p in (1000, 1005, 1010, 1011, 1500):
        b.submit(sell(1, p))
    ev = b.submit(m := buy(10, kind=Kind.MARKET, tif=Tif.IOC))
    assert [f.price for f in of(ev, Filled) if f.order_id == m.order_id] == [1000, 1005, 1010]
    cancel = of(ev, Canceled)[0]
    assert (cancel.reason, cancel.qty) == (Reason.MARKET_PROTECTION, 7)
    assert b.depth()[1] == [(1011, 1), (1500, 1)]


def test_market_order_on_empty_book_is_canceled_for_no_liquidity() -> None:
    ev = Book("X").submit(buy(1, kind=Kind.MARKET))
    assert of(ev, Canceled)[0].reason == Reason.NO_LIQUIDITY


def test_market_buy_respects_its_quote_budget() -> None:
    b = Book("X")
    b.submit(sell(10, 100))
    ev = b.submit(m := buy(10, kind=Kind.MARKET, budget=350))
    assert sum(f.qty for f in of(ev, Filled) if f.order_id == m.order_id) == 3
    assert of(ev, Canceled)[0].reason == Reason.QUOTE_BUDGET_EXHAUSTED


def test_ioc_remainder_is_canceled_and_fok_is_all_or_nothing() -> None:
    b = Book("X")
    b.submit(sell(5, 100))
    ev = b.submit(buy(8, 100, tif=Tif.IOC))
    assert sum(f.qty for f in of(ev, Filled)) == 10 and of(ev, Canceled)[0].qty == 3
    b.submit(sell(5, 100))
    ev = b.submit(buy(6, 100, tif=Tif.FOK))
    assert not of(ev, Filled) and of(ev, Canceled)[0].reason == Reason.FOK_UNFILLED
    assert b.depth()[1] == [(100, 5)]
    ev = b.submit(buy(5, 100, tif=Tif.FOK))
    assert sum(f.qty for f in of(ev, Filled)) == 10 and not of(ev, Canceled)


def test_post_only_is_rejected_when_it_would_take() -> None:
    b = Book("X")
    b.submit(sell(5, 100))
    ev = b.submit(buy(1, 100, post_only=True))
    assert of(ev, Rejected)[0].reason == Reason.POST_ONLY_WOULD_TAKE and not of(ev, Accepted)
    ev = b.submit(buy(1, 99, post_only=True))
    assert of(ev, Accepted) and b.depth()[0] == [(99, 1)]


def test_gtd_order_expires_at_its_time() -> None:
    b = Book("X")
    b.submit(o := buy(4, 99, tif=Tif.GTD, expire_at=1_000), now=10)
    assert b.expire(999) == []
    ev = b.expire(1_000)
    assert of(ev, Expired)[0].order_id == o.order_id and of(ev, Expired)[0].qty == 4
    assert b.depth() == ([], [])
    ev = b.submit(buy(1, 99, tif=Tif.GTD, expire_at=5), now=10)
    assert of(ev, Rejected)[0].reason == Reason.INVALID_EXPIRY


def test_cancel_and_unknown_cancel() -> None:
    b = Book("X")
    b.submit(o := buy(4, 99))
    assert of(b.cancel(o.order_id, "other-account"), Rejected)[0].reason == Reason.UNKNOWN_ORDER
    ev = b.cancel(o.order_id, "A")
    assert of(ev, Canceled)[0].qty == 4 and of(ev, BookDelta)[0].changes == ((True, 99, 0),)
    assert of(b.cancel(o.order_id, "A"), Rejected)[0].reason == Reason.UNKNOWN_ORDER


def test_replace_quantity_down_keeps_priority_price_change_loses_it() -> None:
    b = Book("X")
    first, second = buy(5, 99, acct="A1"), buy(5, 99, acct="A2")
    b.submit(first)
    b.submit(second)
    ev = b.replace(first.order_id, "A1", 3, None)
    assert of(ev, Replaced)[0].priority_kept and b.depth()[0] == [(99, 8)]
    ev = b.submit(sell(2, 99))
    assert [f.order_id for f in of(ev, Filled) if f.maker] == [first.order_id]
    # quantity up: loses priority
    ev = b.replace(first.order_id, "A1", 6, None)
    assert not of(ev, Replaced)[0].priority_kept
    ev = b.submit(sell(6, 99))
    assert [f.order_id for f in of(ev, Filled) if f.maker] == [second.order_id, first.order_id]
    # price change crossing the book trades at once
    b.submit(sell(1, 105))
    ev = b.replace(first.order_id, "A1", None, 105)
    assert of(ev, Filled)[0].price == 105
    assert of(b.replace(first.order_id, "A1", 2, None), Rejected)[0].reason == Reason.INVALID_QUANTITY


def test_self_trade_prevention_modes() -> None:
    for stp, taker_canceled, maker_canceled, traded in (
        (Stp.CANCEL_NEWEST, True, False, False),
        (Stp.CANCEL_OLDEST, False, True, True),
        (Stp.CANCEL_BOTH, True, True, False),
        (Stp.NONE, False, False, True),
    ):
        b = Book("X")
        b.submit(own := sell(5, 100, acct="A"))
        b.submit(other := sell(5, 101, acct="B"))
        ev = b.submit(t := buy(5, 101, acct="A", stp=stp))
        canceled = {c.order_id: c.reason for c in of(ev, Canceled)}
        assert (t.order_id in canceled) == taker_canceled, stp
        assert (own.order_id in canceled) == maker_canceled, stp
        assert all(r == Reason.SELF_TRADE_PREVENTION for r in canceled.values())
        makers = [f.order_id for f in of(ev, Filled) if f.maker]
        assert (other.order_id in makers or own.order_id in makers) == traded, stp


def test_fok_counts_only_the_liquidity_ahead_of_its_own_resting_order() -> None:
    """STP stops a FOK at its own order, so what lies behind it must not count (it used to fill part)."""
    for stp in (Stp.CANCEL_NEWEST, Stp.CANCEL_BOTH):
        b = Book("X")
        b.submit(sell(3, 100))
        b.submit(own := sell(5, 100, acct="A"))
        b.submit(sell(5, 101))
        ev = b.submit(buy(6, 101, acct="A", tif=Tif.FOK, stp=stp))
        assert not of(ev, Filled) and [(c.reason, c.qty) for c in of(ev, Canceled)] == [
            (Reason.FOK_UNFILLED, 6)], stp
        assert own.order_id in b.orders
        ev = b.submit(buy(3, 101, acct="A", tif=Tif.FOK, stp=stp))
        assert sum(f.qty for f in of(ev, Filled)) == 6 and not of(ev, Canceled), stp
    # An iceberg ahead of the own order shows one slice; its next slice would queue behind.
    b = Book("X")
    b.submit(sell(10, 100, display=2))
    b.submit(sell(5, 100, acct="A"))
    ev = b.submit(buy(3, 100, acct="A", tif=Tif.FOK))
    assert not of(ev, Filled) and of(ev, Canceled)[0].reason == Reason.FOK_UNFILLED


def test_iceberg_shows_a_slice_and_loses_priority_on_refresh() -> None:
    b = Book("X")
    b.submit(ice := sell(10, 100, display=3))
    b.submit(plain := sell(2, 100, acct="C"))
    assert b.depth()[1] == [(100, 5)]
    ev = b.submit(buy(4, 100))
    makers = [(f.order_id, f.qty) for f in of(ev, Filled) if f.maker]
    # 3 from the slice, then the refreshed slice is behind `plain`
    assert makers == [(ice.order_id, 3), (plain.order_id, 1)]
    assert b.depth()[1] == [(100, 4)]
    ev = b.submit(buy(8, 100))
    makers = [(f.order_id, f.qty) for f in of(ev, Filled) if f.maker]
    assert makers == [(plain.order_id, 1), (ice.order_id, 3), (ice.order_id, 3), (ice.order_id, 1)]
    assert b.depth()[1] == []


def test_stop_orders_trigger_on_the_last_trade_price() -> None:
    b = Book("X")
    b.submit(sell(1, 100))
    b.submit(buy(1, 100))  # last = 100
    b.submit(sell(5, 110))
    ev = b.submit(stop := buy(2, kind=Kind.STOP_MARKET, stop_price=105))
    assert of(ev, Accepted) and not of(ev, Triggered) and b.depth()[1] == [(110, 5)]
    b.submit(sell(1, 105, acct="C"))
    ev = b.submit(buy(1, 105, acct="D"))  # last = 105: the stop fires and buys at 110
    trig = of(ev, Triggered)
    assert trig and trig[0].order_id == stop.order_id and trig[0].trigger_price == 105
    assert [(f.price, f.qty) for f in of(ev, Filled) if f.order_id == stop.order_id] == [(110, 2)]


def test_take_profit_limit_and_trailing_stop() -> None:
    b = Book("X")
    b.submit(sell(1, 100, acct="M"))
    b.submit(buy(1, 100, acct="N"))  # last 100
    b.submit(tp := sell(1, 120, kind=Kind.TAKE_PROFIT_LIMIT, stop_price=118))
    b.submit(trail := sell(1, kind=Kind.TRAILING_STOP, trail=5, acct="T"))
    for p in (110, 118):
        b.submit(sell(1, p, acct="M"))
        b.submit(buy(1, p, acct="N"))
    # TP fired at 118 and rests at 120; the trailing stop follows the high (118 - 5 = 113)
    assert b.orders[tp.order_id].kind is Kind.LIMIT and b.depth()[1] == [(120, 1)]
    assert b.orders[trail.order_id].stop_price == 113
    b.submit(buy(3, 112, acct="Q"))
    b.submit(buy(1, 113, acct="Q"))
    ev = b.submit(sell(1, 113, acct="M"))  # last = 113: the trailing stop fires, sells at market
    assert [t.order_id for t in of(ev, Triggered)] == [trail.order_id]
    assert [(f.price, f.qty) for f in of(ev, Filled) if f.order_id == trail.order_id] == [(112, 1)]
    assert trail.order_id not in b.orders


def test_rejections_carry_reason_codes() -> None:
    b = Book("X")
    assert of(b.submit(buy(0, 100)), Rejected)[0].reason == Reason.INVALID_QUANTITY
    assert of(b.submit(buy(1)), Rejected)[0].reason == Reason.MISSING_PRICE
    assert of(b.submit(buy(1, kind=Kind.STOP_MARKET)), Rejected)[0].reason == Reason.MISSING_STOP_PRICE
    b.submit(o := buy(1, 90))
    dup = NewOrder(o.order_id, "A", "c", True, 1, price=90)
    assert of(b.submit(dup), Rejected)[0].reason == Reason.DUPLICATE_ORDER_ID

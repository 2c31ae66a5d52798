"""Order lists on the internal venue: OCO and bracket, through the matcher's Avro records."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from orderstream.common import records as r
from orderstream.matcher.domain.engine import Matcher
from orderstream.matcher.state import dump_order, load_order
from tests.matcher_workload import BTC, submit
from tests.order_lists import leg, order_list


def matcher() -> Matcher:
    m = Matcher()
    m.set_instrument(BTC)
    return m


def events(outs: list[Any]) -> list[tuple[str, str, Any]]:
    """(record type, order id, the detail that matters) of each order event."""
    found = []
    for o in outs:
        rec = o.record
        if o.topic != "order.events":
            continue
        detail: Any = None
        if isinstance(rec, r.OrderFilled):
            detail = rec.fill_quantity
        elif isinstance(rec, r.OrderCanceled):
            detail = rec.reason
        elif isinstance(rec, r.OrderAccepted | r.OrderReplaced):
            detail = rec.quantity
        elif isinstance(rec, r.OrderRejected):
            detail = rec.reason
        found.append((type(rec).__name__, rec.order_id, detail))
    return found


def cancel(n: int, order_id: str, acct: str = "T") -> r.CancelOrder:
    return r.CancelOrder(command_id=f"x{n}", ts_event=n, account_id=acct, order_id=order_id,
                         client_order_id=order_id, symbol="BTC-USD")


SELL_OCO = (leg("SELL", "LIMIT", "1", "101"), leg("SELL", "STOP_MARKET", "1", stop="90"))


def test_an_oco_fill_even_partial_cancels_the_other_leg_in_the_same_step() -> None:
    m = matcher()
    placed = events(m.handle(order_list("OCO", *SELL_OCO), 1))
    assert placed == [("OrderAccepted", "L/1", D(1)), ("OrderAccepted", "L/0", D(1))]  # the stop first
    took = events(m.handle(submit(2, "BUY", "0.4", "101", acct="B"), 2))
    assert ("OrderFilled", "L/0", D("0.4")) in took
    assert ("OrderCanceled", "L/1", "LINKED_ORDER_EXECUTED") in took
    assert "L/1" not in m.book("BTC-USD").orders and m.book("BTC-USD").orders["L/0"].leaves == 600


def test_both_legs_in_reach_of_one_sweep_trade_only_one() -> None:
    m = matcher()
    m.handle(order_list("OCO", leg("SELL", "LIMIT", "1", "100"), leg("SELL", "LIMIT", "1", "101")), 1)
    took = events(m.handle(submit(2, "BUY", "2", "102", acct="B"), 2))
    fills = [e for e in took if e[0] == "OrderFilled" and e[1].startswith("L/")]
    assert fills == [("OrderFilled", "L/0", D(1))]
    assert ("OrderCanceled", "L/1", "LINKED_ORDER_EXECUTED") in took
    book = m.book("BTC-USD")
    assert [o.order_id for o in book.orders.values()] == ["o2"] and book.orders["o2"].leaves == 1000


def test_a_triggered_stop_leg_cancels_the_limit_leg() -> None:
    m = matcher()
    m.handle(order_list("OCO", *SELL_OCO), 1)
    m.handle(submit(2, "BUY", "0.1", "90", acct="B"), 2)
    took = events(m.handle(submit(3, "SELL", "0.1", "90", acct="C"), 3))  # last price 90: the stop fires
    assert ("OrderTriggered", "L/1", None) in took
    assert ("OrderCanceled", "L/0", "LINKED_ORDER_EXECUTED") in took


def test_a_cancel_that_crosses_a_fill_is_refused_and_cancelling_a_leg_cancels_the_list() -> None:
    m = matcher()
    m.handle(order_list("OCO", *SELL_OCO), 1)
    m.handle(submit(2, "BUY", "1", "101", acct="B"), 2)
    late = events(m.handle(cancel(3, "L/1"), 3))
    assert late == [("OrderRejected", "L/1", "UNKNOWN_ORDER")]
    m.handle(order_list("OCO", *SELL_OCO, list_id="M"), 4)
    gone = events(m.handle(cancel(5, "M/0"), 5))
    assert gone == [("OrderCanceled", "M/0", "CLIENT_REQUEST"),
                    ("OrderCanceled", "M/1", "LINKED_ORDER_EXECUTED")]


BRACKET = (leg("BUY", "LIMIT", "1", "100"), leg("SELL", "LIMIT", "1", "110"),
           leg("SELL", "STOP_MARKET", "1", stop="95"))


def test_a_bracket_places_its_exits_as_the_entry_fills_and_grows_them() -> None:
    m = matcher()
    assert events(m.handle(order_list("BRACKET", *BRACKET), 1)) == [("OrderAccepted", "L/0", D(1))]
    first = events(m.handle(submit(2, "SELL", "0.4", "100", acct="S"), 2))
    assert [e for e in first if e[1] != "o2"] == [
        ("OrderFilled", "L/0", D("0.4")), ("OrderAccepted", "L/1", D("0.4")),
        ("OrderAccepted", "L/2", D("0.4"))]
    more = events(m.handle(submit(3, "SELL", "0.6", "100", acct="S"), 3))
    assert [e for e in more if e[1] != "o3"] == [
        ("OrderFilled", "L/0", D("0.6")), ("OrderReplaced", "L/1", D(1)), ("OrderReplaced", "L/2", D(1))]
    out = events(m.handle(submit(4, "BUY", "1", "110", acct="B"), 4))
    assert ("OrderFilled", "L/1", D(1)) in out and ("OrderCanceled", "L/2", "LINKED_ORDER_EXECUTED") in out
    assert not any(o.startswith("L/") for o in m.book("BTC-USD").orders)


def test_a_bracket_entry_partly_filled_then_cancelled_keeps_its_exits_for_what_filled() -> None:
    m = matcher()
    m.handle(order_list("BRACKET", *BRACKET), 1)
    m.handle(submit(2, "SELL", "0.3", "100", acct="S"), 2)
    assert events(m.handle(cancel(3, "L/0"), 3)) == [("OrderCanceled", "L/0", "CLIENT_REQUEST")]
    book = m.book("BTC-USD")
    assert book.orders["L/1"].qty == 300 and book.orders["L/2"].qty == 300
    # the stop-loss fires: the take-profit goes
    m.handle(submit(4, "BUY", "0.1", "95", acct="B"), 4)
    out = events(m.handle(submit(5, "SELL", "0.1", "95", acct="C"), 5))
    assert ("OrderTriggered", "L/2", None) in out and ("OrderCanceled", "L/1", "LINKED_ORDER_EXECUTED") in out


def test_an_exit_that_trades_at_once_ends_the_bracket_and_the_other_exit_is_closed_unplaced() -> None:
    m = matcher()
    m.handle(submit(1, "SELL", "1", "100", acct="S"), 1)
    m.handle(submit(2, "BUY", "5", "99.5", acct="B"), 2)  # a bid above the take-profit's price
    lst = order_list("BRACKET", leg("BUY", "LIMIT", "1", "100"), leg("SELL", "LIMIT", "1", "99"),
                     leg("SELL", "STOP_MARKET", "1", stop="90"))
    out = events(m.handle(lst, 3))
    assert out[:2] == [("OrderAccepted", "L/0", D(1)), ("OrderFilled", "L/0", D(1))]
    assert ("OrderFilled", "L/1", D(1)) in out  # sold at once to the 99.5 bid
    assert out[-2:] == [("OrderAccepted", "L/2", D(1)), ("OrderCanceled", "L/2", "LINKED_ORDER_EXECUTED")]
    assert not any(o.startswith("L/") for o in m.book("BTC-USD").orders)


def test_cancelling_the_list_cancels_every_open_order_and_a_replace_is_refused() -> None:
    m = matcher()
    m.handle(order_list("BRACKET", *BRACKET), 1)
    m.handle(submit(2, "SELL", "0.3", "100", acct="S"), 2)
    replace = r.ReplaceOrder(command_id="rp", ts_event=3, account_id="T", order_id="L/1",
                             client_order_id="kL/1", symbol="BTC-USD", quantity=D(2), price=None)
    refused = events(m.handle(replace, 3))
    assert refused == [("OrderRejected", "L/1", "LINKED_ORDER")]
    out = events(m.handle(cancel(4, "L"), 4))
    assert sorted(e[1] for e in out) == ["L/0", "L/1", "L/2"] and all(e[0] == "OrderCanceled" for e in out)
    assert events(m.handle(cancel(5, "L"), 5)) == [("OrderRejected", "L", "UNKNOWN_ORDER")]


def test_an_invalid_list_is_rejected_order_by_order_and_a_stored_entry_keeps_its_exits() -> None:
    m = matcher()
    bad = order_list("OCO", leg("SELL", "LIMIT", "1", "100.25"), leg("SELL", "STOP_MARKET", "1", stop="90"))
    assert events(m.handle(bad, 1)) == [("OrderRejected", "L/0", "INVALID_TICK_SIZE"),
                                        ("OrderRejected", "L/1", "INVALID_TICK_SIZE")]
    m.handle(order_list("BRACKET", *BRACKET, list_id="B"), 2)
    entry = m.book("BTC-USD").orders["B/0"]
    again = load_order(dump_order(entry))
    assert (again.group, again.exits) == ("B", entry.exits) and entry.exits is not None

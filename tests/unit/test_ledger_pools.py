"""Pool holds: one hold for a parent whose child orders draw on it (OCO, bracket, TWAP/index parents)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal as D
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orderstream.collateral.app import load_account, store_account, with_pool
from orderstream.collateral.domain.ledger import Account, LedgerError, NumberRanges, journal
from orderstream.common import records as r
from orderstream.common.basket import list_orders, placed_at_once
from tests.order_lists import leg, order_list
from tests.unit.test_ledger import BTC, funded, report, stored_changes, submit

ZERO = D(0)
SELL_OCO = ({"side": "SELL", "order_type": "LIMIT", "quantity": D(1), "price": D(35000)},
            {"side": "SELL", "order_type": "STOP_MARKET", "quantity": D(1), "stop_price": D(28000)})


def hold(a: Account, lst: r.SubmitOrderList) -> tuple[list[Any], tuple[str, str] | None]:
    return a.hold_list(lst, placed_at_once(lst), BTC)


def balanced(a: Account, events: list[Any]) -> None:
    """Every event's double entry sums to zero per asset, and free + held match the ledger lines."""
    totals: dict[tuple[str, str], D] = defaultdict(D)
    for e in events:
        for account, asset, amount in journal(a.account_id, e):
            totals[(account, asset)] += amount
    for asset in set(a.free) | set(a.held):
        assert a.held.get(asset, ZERO) >= 0 and a.free.get(asset, ZERO) >= 0


def test_an_oco_holds_its_costliest_leg_once_not_both() -> None:
    a = funded("A", BTC="1")
    lst = order_list("OCO", *SELL_OCO, acct="A")
    events, refusal = hold(a, lst)
    assert refusal is None and [(e.order_id, e.amount) for e in events] == [("L", D(1))]
    assert a.free["BTC"] == 0 and a.held["BTC"] == 1
    tp, sl = list_orders(lst)[:2]
    # the take-profit fills 0.4; the matcher cancels the stop-loss in the same step
    events = a.on_report(report(tp, 1, "ACCEPTED", ZERO, D(1)), BTC)
    events += a.on_report(report(sl, 1, "ACCEPTED", ZERO, D(1)), BTC)
    events += a.on_report(
        report(tp, 2, "PARTIALLY_FILLED", D("0.4"), D("0.6"), (D("0.4"), D(35000), "t1")), BTC)
    assert a.held["BTC"] == D("0.6") and a.pools["L"].amount == D("0.6")
    events += a.on_report(report(sl, 2, "CANCELED", ZERO, ZERO), BTC)
    assert a.pools["L"].amount == D("0.6")  # the take-profit still needs what is left
    events += a.on_report(report(tp, 3, "CANCELED", D("0.4"), ZERO), BTC)
    assert a.pools == {} and a.holds == {}
    assert a.free["BTC"] == D("0.6") and a.held["BTC"] == 0
    assert a.free["USD"] == D(14000) - D(28)  # 0.4 x 35000 less the taker fee
    balanced(a, events)


def test_an_oco_beyond_the_free_balance_is_refused_whole() -> None:
    a = funded("A", BTC="0.5")
    lst = order_list("OCO", *SELL_OCO, acct="A")
    events, refusal = hold(a, lst)
    assert events == [] and refusal is not None and refusal[0] == "INSUFFICIENT_FUNDS"
    assert a.pools == {} and a.holds == {} and a.free["BTC"] == D("0.5")
    unbounded = order_list("OCO", leg("BUY", "LIMIT", "1", "25000"),
                           leg("BUY", "STOP_MARKET", "1", stop="31000"), acct="B")
    assert hold(funded("B", USD="99999"), unbounded)[1] == (
        "QUOTE_BUDGET_REQUIRED", "an OCO buy leg needs a limit price to be held for")


def bracket_buy(a: Account) -> r.SubmitOrderList:
    lst = order_list("BRACKET", leg("BUY", "LIMIT", "1", "30000"),
                     leg("SELL", "LIMIT", "1", "33000"), leg("SELL", "STOP_MARKET", "1", stop="28000"),
                     acct=a.account_id)
    events, refusal = hold(a, lst)
    assert refusal is None and [(e.order_id, e.asset, e.amount) for e in events] == [("L/0", "USD", D(30060))]
    return lst


def test_a_bracket_holds_its_entry_and_then_its_exits_out_of_the_entrys_proceeds() -> None:
    a = funded("A", USD="30060")
    lst = bracket_buy(a)
    entry, tp, sl = list_orders(lst)
    events = a.on_report(report(entry, 1, "ACCEPTED", ZERO, D(1)), BTC)
    events += a.on_report(
        report(entry, 2, "PARTIALLY_FILLED", D("0.4"), D("0.6"), (D("0.4"), D(30000), "t1")), BTC)
    # the 0.4 BTC bought is held at once for the exits, before their own reports arrive
    assert a.free.get("BTC", ZERO) == 0 and a.pools["L"].amount == D("0.4")
    events += a.on_report(report(tp, 1, "ACCEPTED", ZERO, D("0.4")), BTC)
    events += a.on_report(report(sl, 1, "ACCEPTED", ZERO, D("0.4")), BTC)
    events += a.on_report(report(entry, 3, "FILLED", D(1), ZERO, (D("0.6"), D(30000), "t2")), BTC)
    assert a.pools["L"].amount == D(1) and "L/0" not in a.holds
    events += a.on_report(report(tp, 2, "REPLACED", ZERO, D(1)), BTC)
    events += a.on_report(report(tp, 3, "FILLED", D(1), ZERO, (D(1), D(33000), "t3")), BTC)
    events += a.on_report(report(sl, 2, "CANCELED", ZERO, ZERO), BTC)
    assert a.pools == {} and a.holds == {}
    assert a.free == {"USD": D(30060) - D(30060) + D(33000) - D(66), "BTC": ZERO}
    assert a.held == {"USD": ZERO, "BTC": ZERO}
    balanced(a, events)


def test_a_bracket_whose_entry_is_canceled_unfilled_releases_everything() -> None:
    a = funded("A", USD="30060")
    lst = bracket_buy(a)
    entry = list_orders(lst)[0]
    a.on_report(report(entry, 1, "ACCEPTED", ZERO, D(1)), BTC)
    a.on_report(report(entry, 2, "CANCELED", ZERO, ZERO), BTC)
    assert a.pools == {} and a.holds == {} and a.free["USD"] == D(30060) and a.held["USD"] == 0


def test_a_sell_entry_bracket_holds_upfront_what_its_buy_back_can_cost_beyond_the_sale() -> None:
    a = funded("A", BTC="1", USD="3000")
    lst = order_list("BRACKET", leg("SELL", "LIMIT", "1", "30000"),
                     leg("BUY", "LIMIT", "1", "27000"), leg("BUY", "STOP_LIMIT", "1", "32100", "32000"),
                     acct="A")
    events, refusal = hold(a, lst)
    # the stop-loss buys back at most at 32100 + 0.2% = 32164.2; the sale brings at least 29940
    assert refusal is None and [(e.order_id, e.asset, e.amount) for e in events] == [
        ("L/0", "BTC", D(1)), ("L", "USD", D("2224.2"))]
    entry, tp, sl = list_orders(lst)
    a.on_report(report(entry, 1, "ACCEPTED", ZERO, D(1)), BTC)
    a.on_report(report(entry, 2, "FILLED", D(1), ZERO, (D(1), D(30000), "t1")), BTC)
    # the pool grows to the whole buy-back out of the sale's 29,940
    assert a.pools["L"].amount == D("32164.2")
    assert a.free["USD"] == D(3000) - D("2224.2") + D(29940) - D("29940")
    a.on_report(report(sl, 1, "ACCEPTED", ZERO, D(1)), BTC)
    a.on_report(report(tp, 1, "ACCEPTED", ZERO, D(1)), BTC)
    a.on_report(report(sl, 2, "TRIGGERED", ZERO, D(1)), BTC)
    a.on_report(report(tp, 2, "CANCELED", ZERO, ZERO), BTC)
    a.on_report(report(sl, 3, "FILLED", D(1), ZERO, (D(1), D(32100), "t2")), BTC)
    assert a.pools == {} and a.holds == {} and a.free["BTC"] == 1
    assert a.free["USD"] == D(3000) + D(29940) - D("32164.2") and a.held["USD"] == 0
    broke = funded("B", BTC="1", USD="2000")
    assert hold(broke, lst.model_copy(update={"account_id": "B"}))[1][0] == "INSUFFICIENT_FUNDS"


def test_a_sell_entry_bracket_needs_a_priced_stop_loss() -> None:
    lst = order_list("BRACKET", leg("SELL", "LIMIT", "1", "30000"),
                     leg("BUY", "LIMIT", "1", "27000"), leg("BUY", "STOP_MARKET", "1", stop="32000"),
                     acct="A")
    assert hold(funded("A", BTC="1", USD="99999"), lst)[1][0] == "QUOTE_BUDGET_REQUIRED"


def child(parent: str, n: int, qty: str, price: str) -> r.SubmitOrder:
    return submit(f"{parent}/{n}", "A", "BUY", qty, price)


def test_a_parent_pool_funds_children_its_owner_places_and_releases_the_rest_when_closed() -> None:
    a = funded("A", USD="1000")
    _, refusal = a.open_pool("P", "P:h", 1, "BTC-USD", "USD", D(700))
    assert refusal is None and a.free["USD"] == 300 and a.held["USD"] == 700
    c0 = child("P", 0, "0.01", "30000")
    a.on_report(report(c0, 1, "ACCEPTED", ZERO, D("0.01")), BTC)
    fill = report(c0, 2, "FILLED", D("0.01"), ZERO, (D("0.01"), D(30000), "t1"))
    a.on_report(fill, BTC)
    assert a.pools["P"].amount == D(700) - D("300.6") and "P/0" not in a.holds
    assert a.on_report(fill, BTC) == []  # a late repeat of a finished child's fill settles nothing
    more, refusal = a.resize_pool("P", D(-100), "P:r", 2)
    assert refusal is None and more[0].amount == 100
    c1 = child("P", 1, "0.005", "30000")
    a.on_report(report(c1, 1, "ACCEPTED", ZERO, D("0.005")), BTC)
    close = r.ReleaseParentHold(command_id="x", ts_event=3, account_id="A", order_id="P", reason="DONE")
    assert a.release_parent(close) == []  # a child is still open: nothing is released yet
    done = a.on_report(report(c1, 2, "CANCELED", ZERO, ZERO), BTC)
    assert [(e.order_id, e.amount, e.reason) for e in done] == [("P", D("299.4"), "CANCELED")]
    assert a.pools == {} and a.holds == {} and a.free["USD"] == D(1000) - D("300.6") and a.held["USD"] == 0


def test_a_pool_child_cannot_be_replaced_and_a_short_pool_is_a_loud_bug() -> None:
    a = funded("A", BTC="1")
    lst = order_list("OCO", *SELL_OCO, acct="A")
    hold(a, lst)
    rep = r.ReplaceOrder(command_id="rp", ts_event=2, account_id="A", order_id="L/0", client_order_id="L/0",
                         symbol="BTC-USD", quantity=D(2), price=None)
    assert a.hold_replace(rep, BTC)[1][0] == "LINKED_ORDER"
    tp = list_orders(lst)[0]
    with pytest.raises(LedgerError):  # both legs filled in full would be a matcher bug: it must not pass
        a.on_report(report(tp, 1, "FILLED", D(2), ZERO, (D(2), D(35000), "t9")), BTC)


def test_a_pool_and_its_children_are_stored_as_documents_of_their_own_and_found_from_any_child() -> None:
    docs: dict[str, Any] = {}
    changes = stored_changes(docs)
    a = funded("A", USD="30060")
    bracket_buy(a)
    store_account(changes, a, ["L", "L/0", "L/1", "L/2"])
    docs.update({k: v for k, v in changes.written.items() if v is not None})
    assert {"a|A|L", "a|A|L/0", "a|A|L/1", "a|A|L/2"} <= set(docs)
    for order_id in ("L/0", "L/2", "L"):
        assert sorted(with_pool(changes, "A", order_id)) == ["L", "L/0", "L/1", "L/2"]
    again = load_account(changes, "A", with_pool(changes, "A", "L/1"))
    assert again.pools["L"] == a.pools["L"] and set(again.holds) == {"L/0", "L/1", "L/2"}


def report_step(docs: dict[str, Any], rep: r.ExecutionReport) -> tuple[list[Any], list[str]]:
    """The worker's step for one report (app.on_report) on stored documents: (events, ids loaded)."""
    changes = stored_changes(docs)
    ids = with_pool(changes, rep.account_id, rep.order_id)
    account = load_account(changes, rep.account_id, ids)
    events = account.on_report(rep, BTC)
    store_account(changes, account, ids)
    for key, doc in changes.written.items():
        if doc is None:
            docs.pop(key, None)
        else:
            docs[key] = doc
    return events, ids


def stored_parent(amount: str) -> dict[str, Any]:
    a = funded("A", USD="100000")
    a.open_pool("P", "P:h", 1, "BTC-USD", "USD", D(amount))
    docs: dict[str, Any] = {}
    changes = stored_changes(docs)
    store_account(changes, a, ["P"])
    docs.update({k: v for k, v in changes.written.items() if v is not None})
    return docs


def test_a_parent_pool_keeps_its_ended_children_as_numbers_so_a_step_loads_no_more_after_5000() -> None:
    docs = stored_parent("20000")
    sizes = {}
    for n in range(5000):
        c = child("P", n, "0.0001", "30000")
        report_step(docs, report(c, 1, "ACCEPTED", ZERO, D("0.0001")))
        fill = report(c, 2, "FILLED", D("0.0001"), ZERO, (D("0.0001"), D(30000), f"t{n}"))
        events, ids = report_step(docs, fill)
        assert [e.delta for e in events] == [D("-3.006"), D("0.0001")]
        if n in (4, 4999):
            assert ids == [f"P/{n}", "P"]  # the child and its pool, whatever the children before it
            sizes[n] = len(orjson.dumps(docs["a|A|P"]))
    # the pool's document has no trace of each ended child: only their range of numbers
    assert docs["a|A|P"]["members"] == [] and docs["a|A|P"]["finished"] == [[0, 4999]]
    assert sizes[4999] - sizes[4] <= 3 and sizes[4999] < 400  # "[[0,4]]" -> "[[0,4999]]"
    assert not any(key.startswith("a|A|P/") for key in docs)
    # a late repeat of an early child's fill settles nothing; its step loads the pool only
    last = child("P", 5000, "0.0001", "30000")
    report_step(docs, report(last, 1, "ACCEPTED", ZERO, D("0.0001")))
    before = dict(docs)
    events, ids = report_step(docs, report(child("P", 3, "0.0001", "30000"), 2, "FILLED", D("0.0001"), ZERO,
                                           (D("0.0001"), D(30000), "t3")))
    assert events == [] and ids == ["P/3", "P", "P/5000"] and docs == before
    # closed with its 5,001 children: the pool goes once the last one ends
    changes = stored_changes(docs)
    account = load_account(changes, "A", with_pool(changes, "A", "P"))
    close = r.ReleaseParentHold(command_id="x", ts_event=3, account_id="A", order_id="P", reason="DONE",
                                children=5001)
    assert account.release_parent(close) == []
    store_account(changes, account, with_pool(changes, "A", "P"))
    docs.update({k: v for k, v in changes.written.items() if v is not None})
    events, _ = report_step(docs, report(last, 2, "CANCELED", ZERO, ZERO))
    assert [(e.order_id, e.amount) for e in events] == [("P", D(20000) - 5000 * D("3.006"))]
    assert set(docs) == {"a|A"} and D(docs["a|A"]["held"]["USD"]) == 0


def test_a_parent_pool_stored_with_every_child_among_its_members_loads_and_is_stored_the_new_way() -> None:
    docs = stored_parent("1000")
    c0, c1, c2 = (child("P", n, "0.01", "30000") for n in range(3))
    for c in (c0, c1, c2):
        report_step(docs, report(c, 1, "ACCEPTED", ZERO, D("0.01")))
    fill1 = report(c1, 2, "FILLED", D("0.01"), ZERO, (D("0.01"), D(30000), "t1"))
    report_step(docs, fill1)
    report_step(docs, report(c0, 2, "CANCELED", ZERO, ZERO))
    assert docs["a|A|P"]["members"] == ["P/2"] and docs["a|A|P"]["finished"] == [[0, 1]]
    # as the pool was stored before its ended children were numbers: every child seen is a member
    old = {k: v for k, v in docs["a|A|P"].items() if k != "finished"} | {"members": ["P/0", "P/1", "P/2"]}
    docs["a|A|P"] = old
    balances = docs["a|A"]
    # a late repeat of P/1's fill: the first step loads every child (once), settles nothing
    events, ids = report_step(docs, fill1)
    assert events == [] and ids == ["P/1", "P", "P/0", "P/2"] and docs["a|A"] == balances
    assert docs["a|A|P"]["members"] == ["P/2"] and docs["a|A|P"]["finished"] == [[0, 1]]
    assert with_pool(stored_changes(docs), "A", "P/2") == ["P/2", "P"]
    # the open child still draws on the pool, and the pool ends with it
    changes = stored_changes(docs)
    ids = with_pool(changes, "A", "P")
    parent = load_account(changes, "A", ids)
    close = r.ReleaseParentHold(command_id="x", ts_event=3, account_id="A", order_id="P", reason="DONE",
                                children=3)
    assert parent.release_parent(close) == []
    store_account(changes, parent, ids)
    docs.update({k: v for k, v in changes.written.items() if v is not None})
    events, _ = report_step(docs, report(c2, 2, "FILLED", D("0.01"), ZERO, (D("0.01"), D(30000), "t2")))
    assert [type(e).__name__ for e in events] == ["FillSettled", "FillSettled", "CollateralReleased"]
    assert events[-1].amount == D(1000) - 2 * D("300.6") and set(docs) == {"a|A"}


def test_a_parent_child_first_seen_below_ended_ones_joins_and_a_repeat_of_an_ended_one_does_not() -> None:
    a = funded("A", USD="1000")
    a.open_pool("P", "P:h", 1, "BTC-USD", "USD", D(700))
    seen = []
    for n in (4, 7, 2, 5, 0, 10):  # gaps (numbers the owner never used) and out of order (index rounds)
        c = child("P", n, "0.001", "30000")
        fill = report(c, 1, "FILLED", D("0.001"), ZERO, (D("0.001"), D(30000), f"t{n}"))
        assert len(a.on_report(fill, BTC)) == 2  # settled from the pool: a new child
        seen.append(fill)
    assert a.pools["P"].finished.ranges == [(0, 0), (2, 2), (4, 5), (7, 7), (10, 10)]
    for fill in seen:
        assert a.on_report(fill, BTC) == []
    free = a.free["USD"]
    close = r.ReleaseParentHold(command_id="x", ts_event=3, account_id="A", order_id="P", reason="DONE",
                                children=7)
    assert a.release_parent(close) == []  # one child not seen yet
    late = child("P", 1, "0.001", "30000")
    a.on_report(report(late, 1, "CANCELED", ZERO, ZERO), BTC)
    assert a.pools == {} and a.free["USD"] == free + D(700) - 6 * D("30.06")


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=80))
def test_number_ranges_hold_the_numbers_added_as_their_runs(numbers: list[int]) -> None:
    ranges = NumberRanges()
    for n in numbers:
        ranges.add(n)
    assert {n for n in range(-1, 62) if n in ranges} == set(numbers)
    assert ranges.count() == len(set(numbers))
    flat = [n for lo_hi in ranges.ranges for n in lo_hi]
    assert flat == sorted(flat) and all(lo <= hi for lo, hi in ranges.ranges)
    assert all(prev[1] + 1 < nxt[0] for prev, nxt in zip(ranges.ranges, ranges.ranges[1:], strict=False))
    assert NumberRanges.from_doc(orjson.loads(orjson.dumps(ranges.to_doc()))) == ranges

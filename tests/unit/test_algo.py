"""The TWAP/VWAP slicer (router/domain/algo.py): schedule, slice sizes, participation, fills, benchmarks."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from orderstream.common import records as r
from orderstream.common.trading import QUANTUM
from orderstream.router.domain import algo
from tests.unit.test_ledger import BTC, funded
from tests.unit.test_ledger import report as ledger_report

S = 1_000_000_000
T0 = 1_700_000_000 * S
LOT, MIN = D("0.001"), D("0.001")


def parent(kind: str = "TWAP", quantity: str = "1", seconds: int = 60, interval_ms: int = 10_000,
           participation: str | None = None, side: str = "BUY") -> dict[str, Any]:
    return algo.open_algo(
        r.SubmitAlgoOrder(
            command_id="c1", ts_event=T0, account_id="a", order_id="BTC-USD-p", client_order_id="cli",
            symbol="BTC-USD", side=r.Side(side), algo=r.AlgoType(kind), quantity=D(quantity),
            limit_price=D("100"), start_at=T0, end_at=T0 + seconds * S, slice_interval_ms=interval_ms,
            participation=None if participation is None else D(participation),
        )
    )


def report(doc: dict[str, Any], seq: int, fill: str | None, price: str, status: str) -> r.ExecutionReport:
    child = doc["open"]["order_id"]
    return r.ExecutionReport(
        event_id=f"{child}:{seq}", ts_event=T0, account_id="a", order_id=child, client_order_id="cli/x",
        symbol="BTC-USD", side=r.Side.BUY, order_type=r.OrderType.LIMIT, status=r.OrderStatus(status),
        quantity=D(1), price=D(price), filled_quantity=D(0), remaining_quantity=D(0), average_price=None,
        last_fill_quantity=None if fill is None else D(fill),
        last_fill_price=None if fill is None else D(price), fees=D(0), sequence=seq, venue="INTERNAL",
    )


def run(doc: dict[str, Any], k: int, fills: str | None, price: str = "100", volume: str = "0") -> D:
    """Decide slice k at its time; the child fills `fills` (all it asked for when "all") and ends."""
    now = algo.slice_at(doc, k)
    assert algo.is_due(doc, now) and not algo.is_due(doc, now - 1)
    k2, quantity, why = algo.plan_slice(doc, now, D(volume), LOT, MIN)
    child = algo.child_order(doc, k2, quantity, now) if quantity else None
    algo.sliced(doc, k2, child, now, why)
    if child is not None:
        assert child.order_id == f"BTC-USD-p/{k2}" and child.time_in_force == r.TimeInForce.IOC
        got = quantity if fills == "all" else D(fills or 0)
        assert algo.on_child_report(doc, report(doc, 1, None, price, "NEW"))
        assert algo.on_child_report(doc, report(doc, 2, str(got) if got else None, price, "CANCELED"))
    return quantity


def test_a_twap_over_60_s_sends_seven_even_slices_ten_seconds_apart_and_ends_filled() -> None:
    doc = parent()
    assert doc["slices"] == 7 and algo.next_due(doc) == T0
    sizes = [run(doc, k, "all") for k in range(7)]
    assert [algo.slice_at(doc, k) - T0 for k in range(7)] == [k * 10 * S for k in range(7)]
    assert sizes == [D("0.142"), D("0.143"), D("0.143"), D("0.143"), D("0.143"), D("0.143"), D("0.143")]
    assert sum(sizes) == 1 and doc["status"] == "DONE" and doc["reason"] == "FILLED" and doc["sent"] == 7
    assert algo.next_due(doc) is None


def test_a_slice_short_of_its_fill_is_carried_into_the_next_and_the_last_asks_for_the_rest() -> None:
    doc = parent(seconds=20)  # 3 slices
    assert run(doc, 0, "0.1") == D("0.333")
    assert run(doc, 1, "0") == D("0.566")  # 2/3 target, only 0.1 filled
    assert run(doc, 2, "all") == D("0.9")
    assert D(doc["filled"]) == 1 and doc["status"] == "DONE"


def test_the_window_ends_done_with_what_filled_when_the_last_child_fills_nothing() -> None:
    doc = parent(seconds=10)
    run(doc, 0, "0.2")
    run(doc, 1, None)
    assert doc["status"] == "DONE" and doc["reason"] == "WINDOW_ENDED" and D(doc["filled"]) == D("0.2")


def test_slices_missed_while_the_router_was_down_become_one_catch_up_slice() -> None:
    doc = parent()
    run(doc, 0, "all")
    late = algo.slice_at(doc, 3) + S // 2  # slices 1..3 were due while no router ran
    k, quantity, _ = algo.plan_slice(doc, late, D(0), LOT, MIN)
    assert (k, quantity) == (3, D("0.571") - D("0.142"))
    algo.sliced(doc, k, algo.child_order(doc, k, quantity, late), late)
    assert doc["next"] == 4 and algo.next_due(doc) == T0 + 40 * S and doc["open"]["order_id"] == "BTC-USD-p/3"
    assert not algo.is_due(doc, T0 + 50 * S)  # a child under way: the next slice waits for it


def test_a_vwap_slice_takes_its_share_of_what_others_traded_since_the_last_slice() -> None:
    doc = parent("VWAP", quantity="1", participation="0.25")
    assert run(doc, 0, "all", volume="0.4") == D("0.1")
    # 0.6 traded since, 0.1 of it this parent's own child: 25% of 0.5
    assert run(doc, 1, "all", volume="0.6") == D("0.125")
    assert run(doc, 2, "all", volume="0") == 0 and doc["reason"] == "PARTICIPATION_CAP"
    assert run(doc, 3, "all", volume="100") == D("0.775")  # never more than what is left
    assert doc["status"] == "DONE" and D(doc["filled"]) == 1


def test_a_participation_cap_bounds_a_twap_slice() -> None:
    doc = parent(participation="0.1")
    assert run(doc, 0, "all", volume="0.5") == D("0.05")


def test_a_cancel_waits_for_the_child_under_way_and_stops_the_schedule() -> None:
    doc = parent()
    now = T0
    k, quantity, _ = algo.plan_slice(doc, now, D(0), LOT, MIN)
    algo.sliced(doc, k, algo.child_order(doc, k, quantity, now), now)
    assert algo.cancel(doc) and doc["status"] == "WORKING" and algo.next_due(doc) is None
    assert not algo.cancel(doc)
    assert algo.on_child_report(doc, report(doc, 1, "0.1", "99", "CANCELED"))
    assert doc["status"] == "CANCELED" and D(doc["filled"]) == D("0.1")
    idle = parent()
    assert algo.cancel(idle) and idle["status"] == "CANCELED"


def test_a_report_seen_twice_or_of_another_order_counts_once() -> None:
    doc = parent()
    run(doc, 0, None)
    k, quantity, _ = algo.plan_slice(doc, algo.slice_at(doc, 1), D(0), LOT, MIN)
    algo.sliced(doc, k, algo.child_order(doc, k, quantity, 0), algo.slice_at(doc, 1))
    fill = report(doc, 1, "0.1", "100", "PARTIALLY_FILLED")
    assert algo.on_child_report(doc, fill) and not algo.on_child_report(doc, fill)
    other = fill.model_copy(update={"order_id": "BTC-USD-p/0", "sequence": 5})
    assert not algo.on_child_report(doc, other)
    assert D(doc["filled"]) == D("0.1")


def test_benchmarks_twap_holds_each_price_until_the_next_trade_and_vwap_weights_by_volume() -> None:
    tape = [(T0 - S, D(90), D(1)), (T0 + 10 * S, D(100), D(1)), (T0 + 40 * S, D(110), D(3))]
    twap, vwap = algo.benchmarks(tape, T0, T0 + 60 * S)
    # 90 for 10 s, 100 for 30 s, 110 for 20 s
    assert twap == (D(90 * 10 + 100 * 30 + 110 * 20) / 60).quantize(QUANTUM) and vwap == D(100 + 330) / 4
    assert algo.benchmarks([], T0, T0 + S) == (None, None)
    assert algo.volume_between(tape, T0, T0 + 40 * S) == 4


def test_the_update_event_reports_progress_against_the_window() -> None:
    doc = parent(seconds=10)
    run(doc, 0, "0.4", price="101")
    tape = [(T0 + S, D(100), D(1)), (T0 + 3 * S, D(102), D(1))]
    e = algo.update(doc, tape, T0 + 5 * S, "t")
    assert e.sequence == 1 and e.status == r.AlgoStatus.WORKING and e.filled_quantity == D("0.4")
    assert e.average_price == D(101) and e.window_vwap == D(101) and e.window_twap == D(100 * 2 + 102 * 2) / 4
    assert e.next_slice_at == T0 + 10 * S and e.slices_sent == 1


def test_a_twap_buy_is_funded_by_one_pool_its_children_draw_on_and_the_rest_is_released_at_the_end() -> None:
    a = funded("A", USD="1000")
    cmd = r.SubmitAlgoOrder(
        command_id="c-P", ts_event=1, account_id="A", order_id="P", client_order_id="P", symbol="BTC-USD",
        side=r.Side.BUY, algo=r.AlgoType.TWAP, quantity=D("0.02"), limit_price=D(30000), start_at=T0,
        end_at=T0 + 10 * S, slice_interval_ms=5000, participation=None,
    )
    events, refusal = a.hold_algo(cmd, BTC)
    # 0.02 x 30000 plus the higher fee (0.2%)
    assert refusal is None and [(e.order_id, e.amount) for e in events] == [("P", D("601.2"))]
    unpriced = cmd.model_copy(update={"order_id": "Q", "limit_price": None})
    assert a.hold_algo(unpriced, BTC)[1][0] == "QUOTE_BUDGET_REQUIRED"
    too_big = cmd.model_copy(update={"order_id": "Q", "quantity": D(1)})
    assert a.hold_algo(too_big, BTC)[1][0] == "INSUFFICIENT_FUNDS"
    doc = algo.open_algo(cmd)
    c0 = algo.child_order(doc, 0, D("0.01"), T0)
    a.on_report(ledger_report(c0, 1, "ACCEPTED", D(0), D("0.01")), BTC)
    a.on_report(ledger_report(c0, 2, "FILLED", D("0.01"), D(0), (D("0.01"), D(29000), "t1")), BTC)
    assert a.pools["P"].amount == D("601.2") - D("290.58")  # 0.01 x 29000 and its taker fee
    close = r.ReleaseParentHold(command_id="x", ts_event=3, account_id="A", order_id="P", reason="DONE")
    [released] = a.release_parent(close)
    assert released.amount == D("310.62") and a.pools == {} and a.held["USD"] == 0
    assert a.free["USD"] == D(1000) - D("290.58") and a.free["BTC"] == D("0.01")

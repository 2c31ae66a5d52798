"""The matcher without I/O: instrument rules, Avro records out, and recovery from a cut-off write log."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from orderstream.common import records as r
from orderstream.matcher.domain.engine import Matcher
from orderstream.matcher.state import command_writes, dump_order, record_change, restore_books
from tests.matcher_workload import BTC, random_commands, submit


def matcher() -> Matcher:
    m = Matcher()
    m.set_instrument(BTC)
    return m


def test_rule_violations_are_rejections_with_reason_codes() -> None:
    m = matcher()
    cases = {
        "INVALID_TICK_SIZE": submit(1, "BUY", "0.01", "100.25"),
        "INVALID_LOT_SIZE": submit(2, "BUY", "0.0105", "1000"),
        "BELOW_MIN_NOTIONAL": submit(3, "BUY", "0.001", "100"),
        "UNKNOWN_SYMBOL": submit(4, "BUY", "1", "100", symbol="DOGE-USD"),
    }
    for reason, cmd in cases.items():
        (out,) = m.handle(cmd, 1)
        assert out.topic == "order.events" and out.key == "A"
        rec = out.record
        assert isinstance(rec, r.OrderRejected) and rec.reason == reason, reason
        assert rec.rejected_command == "SubmitOrder" and rec.event_id == f"{cmd.command_id}:0"


def test_a_cross_emits_exact_decimal_records_on_the_right_topics() -> None:
    m = matcher()
    m.handle(submit(1, "SELL", "0.250", "64000.5", acct="S"), 10)
    outs = m.handle(submit(2, "BUY", "0.100", "64001", acct="B"), 20)
    kinds = [(o.topic, type(o.record).__name__, o.key) for o in outs]
    assert kinds == [("order.events", "OrderAccepted", "B"), ("order.events", "OrderFilled", "B"),
                     ("order.events", "OrderFilled", "S"), ("md.trades", "Trade", "BTC-USD"),
                     ("md.book", "BookUpdate", "BTC-USD")]
    taker, maker = outs[1].record, outs[2].record
    assert isinstance(taker, r.OrderFilled) and isinstance(maker, r.OrderFilled)
    assert (taker.fill_price, taker.fill_quantity, taker.liquidity) == (Decimal("64000.5"), Decimal("0.100"),
                                                                       r.Liquidity.TAKER)
    assert (maker.leaves_quantity, maker.liquidity) == (Decimal("0.150"), r.Liquidity.MAKER)
    assert maker.sequence == 2
    book = outs[4].record
    assert isinstance(book, r.BookUpdate)
    assert [(c.side, c.price, c.quantity) for c in book.changes] == [
        (r.BookSide.ASK, Decimal("64000.5"), Decimal("0.150"))]
    assert [o.record.event_id for o in outs[:3]] == ["cmd-2:0", "cmd-2:1", "cmd-2:2"]  # type: ignore[attr-defined]
    snap = m.depth("BTC-USD")
    assert [(lv.side, lv.price, lv.quantity) for lv in snap.levels] == [
        (r.BookSide.ASK, Decimal("64000.5"), Decimal("0.150"))]


def test_cancel_of_someone_elses_order_is_refused() -> None:
    m = matcher()
    m.handle(submit(1, "SELL", "1", "100", acct="S"), 1)
    (out,) = m.handle(r.CancelOrder(command_id="x", ts_event=2, account_id="intruder", order_id="o1",
                                    client_order_id="c", symbol="BTC-USD"), 2)
    assert isinstance(out.record, r.OrderRejected) and out.record.reason == "UNKNOWN_ORDER"
    assert m.book("BTC-USD").depth()[1] == [(200, 1000)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_recovery_from_any_cut_of_the_write_log_equals_a_whole_command_boundary(
    seed: int, data: st.DataObject
) -> None:
    """A hard kill keeps a prefix of the table's writes; recovery completes the last command it saw."""
    cmds = random_commands(seed, 80)
    m = matcher()
    log: list[tuple[bytes, bytes | None]] = []
    boundaries = []  # (index into log where a command's change record is, depth after it)
    for seq, cmd in enumerate(cmds, 1):
        m.handle(cmd, seq)
        change = record_change(cmd.symbol, m.books.get(cmd.symbol), seq, [])
        writes = command_writes(cmd.command_id, change)
        book = m.book("BTC-USD")
        boundaries.append((len(log), book.depth(), {o: dump_order(v) for o, v in book.orders.items()}))
        log.extend(writes)
    cut = data.draw(st.integers(0, len(log)))
    table: dict[bytes, bytes] = {}
    for key, value in log[:cut]:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    state = restore_books(list(table.items()), 50_000)
    books, seqs = state.books, state.seqs
    seen = [b for b in boundaries if b[0] < cut]
    if not seen:
        assert "BTC-USD" not in books or books["BTC-USD"].depth() == ([], [])
        return
    _, depth, orders = seen[-1]
    restored = books["BTC-USD"]
    assert restored.depth() == depth
    assert {o: dump_order(v) for o, v in restored.orders.items()} == orders  # every field, seq included
    assert seqs["BTC-USD"] == len(seen)
    # The ids a restarted worker still recognises as done: every command whose change survived.
    assert state.recent["BTC-USD"] == [c.command_id for c in cmds[:len(seen)]]

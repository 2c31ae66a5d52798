"""Order lists (OCO, bracket) in the book over random command streams: the links always hold.

Plain orders of other accounts, OCOs and brackets of one trader and cancels of orders, legs, entries
and list ids are mixed at random; after every command the book's structure and the event stream's
invariants (tests/unit/test_book_properties.py) hold, and over the whole stream: no two orders of an
OCO ever trade, a bracket's exits never hold or trade more than its entry filled and at most one of
them trades, once an OCO leg or an exit traded or triggered no other order of its list trades after
that command, and every order ends with one terminal event or is still in the book.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderstream.matcher.domain.book import Book
from orderstream.matcher.domain.model import (
    Accepted,
    AnyEvent,
    Canceled,
    Expired,
    Filled,
    Kind,
    Order,
    Rejected,
    Replaced,
    Tif,
    Triggered,
)
from orderstream.matcher.state import dump_order, load_order
from tests.unit.test_book_properties import check_events, check_structure

plain = st.tuples(st.just("order"), st.booleans(), st.sampled_from([Kind.LIMIT] * 4 + [Kind.MARKET]),
                  st.integers(1, 12), st.integers(94, 106), st.sampled_from(["A", "B"]),
                  st.sampled_from([Tif.GTC, Tif.GTC, Tif.IOC]))
oco = st.tuples(st.just("oco"), st.booleans(), st.integers(1, 10), st.integers(1, 6), st.integers(1, 6),
                st.booleans())
bracket = st.tuples(st.just("bracket"), st.booleans(), st.integers(1, 10), st.integers(-2, 2),
                    st.integers(1, 6), st.integers(1, 6))
cancel = st.tuples(st.just("cancel"), st.integers(0, 400))
commands = st.lists(st.one_of(plain, plain, plain, oco, bracket, cancel, cancel), min_size=20, max_size=120)


def run(cmds: list[tuple[Any, ...]], book: Book | None = None, start: int = 0,
        known: list[tuple[str, str]] | None = None) -> tuple[Book, list[list[AnyEvent]], dict[str, str]]:
    """Apply the commands (numbered from `start`) to `book` (default: a fresh one); the book, each
    command's events, and the lists (id -> kind). `known`: the ids a cancel may aim at, with their
    account (grown as orders are placed)."""
    book = book if book is not None else Book("X")
    out: list[list[AnyEvent]] = []
    lists: dict[str, str] = {}
    known = known if known is not None else []
    for i, c in enumerate(cmds, start):
        now = i + 1
        if c[0] == "order":
            _, buy, kind, qty, price, acct, tif = c
            o = Order(f"o{i}", acct, f"c{i}", buy, qty, kind, tif, None if kind is Kind.MARKET else price)
            known.append((o.order_id, acct))
            out.append(book.submit(o, now))
        elif c[0] == "oco":  # a limit beyond the market and a stop on the other side of it, one side
            _, buy, qty, gap, stop_gap, stop_limit = c
            price, stop = (100 - gap, 100 + stop_gap) if buy else (100 + gap, 100 - stop_gap)
            g = f"L{i}"
            legs = [Order(f"{g}/0", "T", f"k{g}/0", buy, qty, Kind.LIMIT, price=price),
                    Order(f"{g}/1", "T", f"k{g}/1", buy, qty,
                          Kind.STOP_LIMIT if stop_limit else Kind.STOP_MARKET,
                          price=stop if stop_limit else None, stop_price=stop)]
            lists[g] = "OCO"
            known += [(g, "T"), (f"{g}/0", "T"), (f"{g}/1", "T")]
            out.append(book.submit_list(g, True, legs, now))
        elif c[0] == "bracket":
            _, buy, qty, off, tp_gap, sl_gap = c
            price = 100 + off
            tp, sl = (price + tp_gap, price - sl_gap) if buy else (price - tp_gap, price + sl_gap)
            g = f"L{i}"
            entry = Order(f"{g}/0", "T", f"k{g}/0", buy, qty, Kind.LIMIT, price=price)
            entry.exits = [[int(Kind.LIMIT), tp, None], [int(Kind.STOP_MARKET), None, sl]]
            lists[g] = "BRACKET"
            known += [(g, "T"), (f"{g}/0", "T"), (f"{g}/1", "T"), (f"{g}/2", "T")]
            out.append(book.submit_list(g, False, [entry], now))
        elif known:
            order_id, acct = known[c[1] % len(known)]
            out.append(book.cancel(order_id, acct, now))
        check_structure(book)
    return book, out, lists


def check_lists(book: Book, batches: list[list[AnyEvent]], lists: dict[str, str]) -> None:
    filled: dict[str, int] = defaultdict(int)
    quantity: dict[str, int] = {}
    ended_at: dict[str, tuple[int, str]] = {}  # list -> (command, order) where an OCO leg or exit fired
    terminal: dict[str, int] = defaultdict(int)
    for n, batch in enumerate(batches):
        for e in batch:
            if not isinstance(e, Accepted | Filled | Canceled | Expired | Rejected | Replaced | Triggered):
                continue
            group, _, leg = e.order_id.rpartition("/")
            linked = group in lists and not (lists[group] == "BRACKET" and leg == "0")
            if isinstance(e, Filled):
                filled[e.order_id] += e.qty
                if group in lists and group in ended_at and ended_at[group][1] != e.order_id:
                    assert ended_at[group][0] == n, f"{e.order_id} traded after its list ended"
            if isinstance(e, Accepted | Replaced):
                quantity[e.order_id] = e.qty
            refused = isinstance(e, Rejected) and e.command == "SubmitOrder"
            if isinstance(e, Canceled | Expired) or refused or (isinstance(e, Filled) and e.leaves == 0):
                terminal[e.order_id] += 1
            if linked and (isinstance(e, Filled | Triggered)):
                ended_at.setdefault(group, (n, e.order_id))  # the order that ended it may go on trading
    for g, kind in lists.items():
        if kind == "OCO":
            traded = [n for n in (0, 1) if filled[f"{g}/{n}"]]
            assert len(traded) <= 1, f"OCO {g}: legs {traded} both traded"
        else:
            entry = filled[f"{g}/0"]
            exits = [filled[f"{g}/{n}"] for n in (1, 2)]
            assert sum(1 for x in exits if x) <= 1, f"bracket {g}: both exits traded"
            for n in (1, 2):
                assert quantity.get(f"{g}/{n}", 0) <= entry, f"bracket {g}: exit {n} beyond its entry {entry}"
    for order_id, count in terminal.items():
        rejected_only = order_id not in quantity
        assert count == 1 or rejected_only, f"{order_id} ended {count} times"
        assert order_id not in book.orders, f"{order_id} ended but rests"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands)
def test_random_streams_with_order_lists_keep_their_links(cmds: list[tuple[Any, ...]]) -> None:
    book, batches, lists = run(cmds)
    check_events(batches)
    check_lists(book, batches, lists)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands, st.integers(0, 119))
def test_a_book_restored_from_its_orders_goes_on_as_the_original(
    cmds: list[tuple[Any, ...]], cut: int
) -> None:
    """Links live in the stored orders (the matcher's table keeps only them): a book rebuilt from its
    orders at any point produces the same events for the rest of the stream as the one never stopped."""
    cut = min(cut, len(cmds))
    whole = run(cmds)[1]
    known: list[tuple[str, str]] = []
    book, first, _ = run(cmds[:cut], known=known)
    stored = [load_order(dump_order(o)) for o in sorted(book.orders.values(), key=lambda o: o.priority)]
    restored = Book.restore("X", dataclasses.replace(book.meta), stored)
    again = run(cmds[cut:], restored, start=cut, known=known)[1]
    assert first + again == whole

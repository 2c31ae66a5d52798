"""Properties of the matching core over random command streams."""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orderstream.matcher.domain.book import Book
from orderstream.matcher.domain.model import (
    Accepted,
    AnyEvent,
    BookDelta,
    Filled,
    Kind,
    NewOrder,
    Replaced,
    Stp,
    Tif,
    TradePrint,
)

ACCOUNTS = ("A", "B", "C")

submit = st.tuples(
    st.just("submit"), st.booleans(),
    st.sampled_from([Kind.LIMIT] * 6 + [Kind.MARKET, Kind.STOP_MARKET, Kind.STOP_LIMIT,
                                        Kind.TAKE_PROFIT_LIMIT, Kind.TRAILING_STOP]),
    st.sampled_from([Tif.GTC] * 4 + [Tif.IOC, Tif.FOK, Tif.GTD]),
    st.integers(1, 20), st.integers(95, 105), st.sampled_from([None, None, None, 2, 5]),
    st.sampled_from(list(Stp)), st.sampled_from(ACCOUNTS), st.booleans(),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, 200))
replace = st.tuples(st.just("replace"), st.integers(0, 200), st.one_of(st.none(), st.integers(1, 25)),
                    st.one_of(st.none(), st.integers(90, 110)))
tick = st.tuples(st.just("tick"), st.integers(1, 30))
commands = st.lists(st.one_of(submit, submit, submit, cancel, replace, tick), min_size=30, max_size=150)


def target(book: Book, k: int) -> tuple[str, str]:
    """Mostly an open order (k-th by priority), sometimes an id the book does not know."""
    if k % 10 == 9 or not book.orders:
        return f"o{k}", "A"
    o = sorted(book.orders.values(), key=lambda x: x.priority)[k % len(book.orders)]
    return o.order_id, o.account_id


def run(book: Book, cmds: list[tuple[Any, ...]], start: int = 0, clock: list[int] | None = None
        ) -> list[list[AnyEvent]]:
    """Apply commands; the events of each. Order ids and accounts are derived from the index."""
    clock = clock if clock is not None else [0]
    out = []
    for i, c in enumerate(cmds, start):
        clock[0] += 1
        now = clock[0]
        if c[0] == "submit":
            _, is_buy, kind, tif, qty, price, display, stp, acct, post = c
            priced = kind in (Kind.LIMIT, Kind.STOP_LIMIT, Kind.TAKE_PROFIT_LIMIT)
            cmd = NewOrder(
                f"o{i}", acct, f"c{i}", is_buy, qty, kind=kind, tif=tif,
                price=price if priced else None,
                stop_price=price + (3 if is_buy else -3) if kind not in (Kind.LIMIT, Kind.MARKET,
                                                                          Kind.TRAILING_STOP) else None,
                trail=2 if kind is Kind.TRAILING_STOP else None,
                display=display if kind is Kind.LIMIT and display and display < qty else None,
                post_only=post and kind is Kind.LIMIT and tif in (Tif.GTC, Tif.GTD),
                expire_at=now + 15 if tif is Tif.GTD else None, stp=stp,
            )
            out.append(book.submit(cmd, now))
        elif c[0] == "cancel":
            out.append(book.cancel(*target(book, c[1]), now))
        elif c[0] == "replace":
            out.append(book.replace(*target(book, c[1]), c[2], c[3], now))
        else:
            clock[0] += c[1]
            out.append(book.expire(clock[0]))
        check_structure(book)
    return out


def check_structure(book: Book) -> None:
    bid, ask = book.best_bid(), book.best_ask()
    assert bid is None or ask is None or bid < ask, f"crossed book {bid} >= {ask}"
    for side in (book.bids, book.asks):
        assert side.keys == sorted(side.keys)
        assert sorted(side.levels) == sorted(k if side.is_bid else -k for k in side.keys)
        for price, level in side.levels.items():
            live = [o for o in level.orders if o.live]
            assert live and level.live == len(live)
            assert level.total == sum(o.visible for o in live) > 0
            assert [o.priority for o in live] == sorted(o.priority for o in live), "FIFO broken"
            for o in live:
                assert o.price == price and o.is_buy == side.is_bid and book.orders[o.order_id] is o
                assert 0 < o.visible <= o.leaves
    for oid, o in book.orders.items():
        assert o.live and o.leaves > 0 and (oid in book.pending) == o.pending


def check_events(batches: list[list[AnyEvent]]) -> None:
    events = [e for batch in batches for e in batch]
    by_trade: dict[str, list[Filled]] = defaultdict(list)
    filled: dict[str, int] = defaultdict(int)
    max_qty: dict[str, int] = defaultdict(int)
    seqs: dict[str, list[int]] = defaultdict(list)
    md = []
    for e in events:
        if isinstance(e, TradePrint | BookDelta):
            md.append(e.md_seq)
            continue
        if e.seq:
            seqs[e.order_id].append(e.seq)
        if isinstance(e, Accepted | Replaced):
            max_qty[e.order_id] = max(max_qty[e.order_id], e.qty)
        if isinstance(e, Filled):
            by_trade[e.trade_id].append(e)
            filled[e.order_id] += e.qty
    for trade_id, fills in by_trade.items():
        assert len(fills) == 2, trade_id
        taker, maker = sorted(fills, key=lambda f: f.maker)
        assert maker.maker and not taker.maker and maker.is_buy != taker.is_buy
        assert (maker.price, maker.qty) == (taker.price, taker.qty) and maker.qty > 0
    for oid, qty in filled.items():
        assert qty <= max_qty[oid], f"{oid} filled {qty} beyond its quantity {max_qty[oid]}"
    for oid, s in seqs.items():
        assert s == list(range(s[0], s[0] + len(s))), f"{oid} sequence gap {s}"
    assert md == list(range(1, len(md) + 1)), "market-data sequence gap"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(commands)
def test_random_streams_keep_every_invariant(cmds: list[tuple[Any, ...]]) -> None:
    check_events(run(Book("X"), cmds))


@settings(max_examples=150, deadline=None)
@given(commands)
def test_replaying_the_same_command_log_yields_the_same_events(cmds: list[tuple[Any, ...]]) -> None:
    assert run(Book("X"), cmds) == run(Book("X"), cmds)


@settings(max_examples=150, deadline=None)
@given(commands, st.data())
def test_a_book_restored_from_its_orders_behaves_like_the_original(cmds: list[tuple[Any, ...]],
                                                                    data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(cmds)))
    original, clock = Book("X"), [0]
    run(original, cmds[:cut], clock=clock)
    restored = Book.restore("X", copy.deepcopy(original.meta), copy.deepcopy(list(original.orders.values())))
    assert restored.depth() == original.depth()
    rest_clock = list(clock)
    assert run(restored, cmds[cut:], cut, rest_clock) == run(original, cmds[cut:], cut, clock)

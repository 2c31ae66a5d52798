"""Properties of the matching core over random command streams.

The structural checks look at the book alone; the model-based test compares every command's events
with a reference book written from the documented rules (limit prices, price-time priority,
self-trade prevention, post-only, IOC, FOK, quantity conservation).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orderstream.common import records as r
from orderstream.matcher.domain.book import Book
from orderstream.matcher.domain.engine import Matcher
from orderstream.matcher.domain.model import (
    Accepted,
    AnyEvent,
    BookDelta,
    Canceled,
    Filled,
    Kind,
    NewOrder,
    Reason,
    Rejected,
    Replaced,
    Stp,
    Tif,
    TradePrint,
)
from tests.matcher_workload import BTC
from tests.matcher_workload import submit as submit_order

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
            out.append(book.submit(new_order(i, c, now), now))
        elif c[0] == "cancel":
            out.append(book.cancel(*target(book, c[1]), now))
        elif c[0] == "replace":
            out.append(book.replace(*target(book, c[1]), c[2], c[3], now))
        else:
            clock[0] += c[1]
            out.append(book.expire(clock[0]))
        check_structure(book)
    return out


def new_order(i: int, c: tuple[Any, ...], now: int) -> NewOrder:
    """The order a generated ("submit", ...) tuple places as the i-th command."""
    _, is_buy, kind, tif, qty, price, display, stp, acct, post = c
    priced = kind in (Kind.LIMIT, Kind.STOP_LIMIT, Kind.TAKE_PROFIT_LIMIT)
    return NewOrder(
        f"o{i}", acct, f"c{i}", is_buy, qty, kind=kind, tif=tif,
        price=price if priced else None,
        stop_price=price + (3 if is_buy else -3) if kind not in (Kind.LIMIT, Kind.MARKET,
                                                                  Kind.TRAILING_STOP) else None,
        trail=2 if kind is Kind.TRAILING_STOP else None,
        display=display if kind is Kind.LIMIT and display and display < qty else None,
        post_only=post and kind is Kind.LIMIT and tif in (Tif.GTC, Tif.GTD),
        expire_at=now + 15 if tif is Tif.GTD else None, stp=stp,
    )


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


# -- against a reference model ------------------------------------------------------------------
# The model is written from the documented rules, not from the book's code: a dict of resting
# orders searched for the best (price, time) on every step, as plain and slow as it gets. Each
# check below compares the book's events with the model's state *before* the command.

BAND_PPM = 50_000  # Book's default: a market order trades at most 5% away from the best price


@dataclass
class Resting:
    order_id: str
    account_id: str
    is_buy: bool
    price: int
    leaves: int
    visible: int
    display: int | None
    time: int


@dataclass
class Outcome:
    """What the model says a submission does."""

    rejected: str | None = None
    fills: list[tuple[str, int, int]] = field(default_factory=list)  # (maker, price, qty) in order
    stp_makers: list[str] = field(default_factory=list)  # own resting orders canceled by STP
    canceled: tuple[str, int] | None = None  # the taker's (reason, qty)
    rests: bool = False


def within(is_buy: bool, limit: int | None, price: int) -> bool:
    """Whether a taker with `limit` may trade at `price` (None: no limit)."""
    return limit is None or (price <= limit if is_buy else price >= limit)


def market_limit(is_buy: bool, best: int) -> int:
    band = best * BAND_PPM // 1_000_000
    return best + band if is_buy else max(1, best - band)


class ModelBook:
    def __init__(self) -> None:
        self.resting: dict[str, Resting] = {}
        self.clock = 0

    def copy(self) -> ModelBook:
        c = ModelBook()
        c.clock = self.clock
        c.resting = {k: dataclasses.replace(v) for k, v in self.resting.items()}
        return c

    def head(self, bids: bool) -> Resting | None:
        """The first order in price-time priority on one side."""
        side = [o for o in self.resting.values() if o.is_buy == bids]
        return min(side, key=lambda o: (-o.price if bids else o.price, o.time), default=None)

    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        levels: dict[tuple[bool, int], int] = defaultdict(int)
        for o in self.resting.values():
            levels[o.is_buy, o.price] += o.visible
        bids = sorted(((p, q) for (b, p), q in levels.items() if b), reverse=True)
        return bids, sorted((p, q) for (b, p), q in levels.items() if not b)

    def trade(self, maker: Resting, qty: int) -> None:
        maker.leaves -= qty
        maker.visible -= qty
        if maker.leaves == 0:
            del self.resting[maker.order_id]
        elif maker.visible == 0:  # an iceberg shows its next slice at the back of the queue
            self.clock += 1
            maker.visible, maker.time = min(maker.display or maker.leaves, maker.leaves), self.clock

    def take(self, o: NewOrder, limit: int | None) -> tuple[Outcome, int]:
        """Trade `o` as the taker; the outcome so far and the quantity left."""
        out, left = Outcome(), o.qty
        while left:
            m = self.head(not o.is_buy)
            if m is None or not within(o.is_buy, limit, m.price):
                break
            if m.account_id == o.account_id and o.stp is not Stp.NONE:
                if o.stp in (Stp.CANCEL_OLDEST, Stp.CANCEL_BOTH):
                    del self.resting[m.order_id]
                    out.stp_makers.append(m.order_id)
                if o.stp in (Stp.CANCEL_NEWEST, Stp.CANCEL_BOTH):
                    out.canceled = (Reason.SELF_TRADE_PREVENTION, left)
                    break
                continue
            qty = min(left, m.visible)
            out.fills.append((m.order_id, m.price, qty))
            self.trade(m, qty)
            left -= qty
        return out, left

    def limit(self, o: NewOrder) -> int | None:
        best = self.head(not o.is_buy)
        if o.kind is Kind.MARKET:
            return None if best is None else market_limit(o.is_buy, best.price)
        return o.price

    def liquidity(self, o: NewOrder) -> int:
        """What `o` could take now: a dry run on a copy, so STP stops it where it would stop."""
        if o.kind is Kind.MARKET and self.head(not o.is_buy) is None:
            return 0
        _, left = self.copy().take(o, self.limit(o))
        return o.qty - left

    def submit(self, o: NewOrder) -> Outcome:
        best = self.head(not o.is_buy)
        if o.post_only and best is not None and within(o.is_buy, o.price, best.price):
            return Outcome(rejected=Reason.POST_ONLY_WOULD_TAKE)
        self.clock += 1
        time = self.clock
        if o.kind is Kind.MARKET and best is None:
            return Outcome(canceled=(Reason.NO_LIQUIDITY, o.qty))
        if o.tif is Tif.FOK and self.liquidity(o) < o.qty:
            return Outcome(canceled=(Reason.FOK_UNFILLED, o.qty))
        out, left = self.take(o, self.limit(o))
        if not left or out.canceled is not None:
            return out
        if o.kind is Kind.MARKET:
            gone = self.head(not o.is_buy) is None
            out.canceled = (Reason.NO_LIQUIDITY if gone else Reason.MARKET_PROTECTION, left)
        elif o.tif is not Tif.GTC:
            out.canceled = (Reason.IOC_REMAINDER, left)
        else:
            assert o.price is not None
            visible = left if o.display is None else min(o.display, left)
            self.resting[o.order_id] = Resting(o.order_id, o.account_id, o.is_buy, o.price, left, visible,
                                               o.display, time)
            out.rests = True
        return out


model_submit = st.tuples(
    st.just("submit"), st.booleans(), st.sampled_from([Kind.LIMIT] * 4 + [Kind.MARKET]),
    st.sampled_from([Tif.GTC] * 3 + [Tif.IOC, Tif.FOK, Tif.FOK]), st.integers(1, 10), st.integers(97, 103),
    st.sampled_from([None, None, None, 2, 3]), st.sampled_from(list(Stp)), st.sampled_from(ACCOUNTS),
    st.sampled_from([False, False, True]),
)
model_commands = st.lists(st.one_of(model_submit, model_submit, model_submit, cancel), min_size=10,
                          max_size=80)


@dataclass
class Ledger:
    """One order's quantities, summed from its events."""

    qty: int
    filled: int = 0
    canceled: int = 0


def check_submission(o: NewOrder, ev: list[AnyEvent], before: ModelBook, book: Book) -> None:
    """Every property of one submission, each against the model's book before it."""
    mine = [e for e in ev if not isinstance(e, TradePrint | BookDelta) and e.order_id == o.order_id]
    taken = [e for e in mine if isinstance(e, Filled)]
    made = [e for e in ev if isinstance(e, Filled) and e.maker]
    canceled = [e for e in mine if isinstance(e, Canceled)]
    filled = sum(f.qty for f in taken)
    rests = o.order_id in book.orders
    best = before.head(not o.is_buy)
    crosses = best is not None and within(o.is_buy, o.price if o.kind is Kind.LIMIT else None, best.price)

    # Fills within the taker's limit (a market order's is the protection band), at the maker's price.
    limit = before.limit(o)
    for t, m in zip(taken, made, strict=True):
        assert t.trade_id == m.trade_id
        assert within(o.is_buy, limit, t.price), f"{o.order_id} filled at {t.price} beyond its limit {limit}"
        assert t.price == before.resting[m.order_id].price, f"{m.order_id} filled away from its price"

    # Price-time priority: replayed on the model's queue, every maker is its head when it trades.
    queue = before.copy()
    for e in ev:
        if isinstance(e, Canceled) and e.order_id != o.order_id:
            del queue.resting[e.order_id]
        elif isinstance(e, Filled) and e.maker:
            head = queue.head(not o.is_buy)
            assert head is not None and head.order_id == e.order_id, f"{e.order_id} traded before {head}"
            queue.trade(head, e.qty)

    # Self-trade prevention: the taker's mode decides who is canceled; only NONE lets an account trade
    # with itself.
    assert o.stp is Stp.NONE or all(t.counterparty != o.account_id for t in taken), "self-trade"
    stp_makers = [e for e in ev if isinstance(e, Canceled) and e.order_id != o.order_id]
    assert all(e.reason == Reason.SELF_TRADE_PREVENTION and before.resting[e.order_id].account_id
               == o.account_id for e in stp_makers)
    taker_stp = any(c.reason == Reason.SELF_TRADE_PREVENTION for c in canceled)
    documented = {Stp.NONE: not stp_makers and not taker_stp, Stp.CANCEL_NEWEST: not stp_makers,
                  Stp.CANCEL_OLDEST: not taker_stp, Stp.CANCEL_BOTH: len(stp_makers) == taker_stp}
    assert documented[o.stp], f"{o.stp.name}: makers {stp_makers}, taker canceled {taker_stp}"

    # Post-only: rejected (never accepted, never trades) when it would cross, else rests whole.
    if o.post_only:
        if crosses:
            assert [(type(e), getattr(e, "reason", None)) for e in mine] == [
                (Rejected, Reason.POST_ONLY_WOULD_TAKE)], f"post-only {o.order_id} crossed: {mine}"
        else:
            assert not taken and rests and book.orders[o.order_id].leaves == o.qty, "post-only did not rest"

    # IOC and market orders never rest; what they did not fill is canceled.
    if o.tif is not Tif.GTC or o.kind is Kind.MARKET:
        assert not rests, f"{o.order_id} ({o.tif.name}) rests"
        assert filled + sum(c.qty for c in canceled) == o.qty, f"{o.order_id}: fills + cancel != quantity"

    # FOK: all at once or nothing, and nothing exactly when the liquidity it could take is short.
    if o.tif is Tif.FOK:
        assert filled in (0, o.qty), f"FOK {o.order_id} filled {filled} of {o.qty}"
        liquidity = before.liquidity(o)
        if liquidity >= o.qty:
            assert filled == o.qty, f"FOK {o.order_id} refused with {liquidity} of {o.qty} there"
        else:
            reason = Reason.NO_LIQUIDITY if o.kind is Kind.MARKET and best is None else Reason.FOK_UNFILLED
            assert [(c.reason, c.qty) for c in canceled] == [(reason, o.qty)], f"FOK {o.order_id}: {canceled}"


def check_conservation(ev: list[AnyEvent], ledger: dict[str, Ledger], book: Book) -> None:
    """Per order: filled + open + canceled == quantity, nothing negative; per step: bought == sold."""
    bought = sum(e.qty for e in ev if isinstance(e, Filled) and e.is_buy)
    assert bought == sum(e.qty for e in ev if isinstance(e, Filled) and not e.is_buy), "bought != sold"
    for e in ev:
        if isinstance(e, Accepted):
            ledger[e.order_id] = Ledger(e.qty)
        elif isinstance(e, Filled):
            assert type(e.qty) is int and type(e.price) is int and e.qty > 0, f"fill {e}"
            entry = ledger[e.order_id]
            entry.filled += e.qty
            assert e.leaves == entry.qty - entry.filled >= 0, f"{e.order_id} leaves {e.leaves}"
        elif isinstance(e, Canceled):
            assert type(e.qty) is int and e.qty > 0, f"cancel {e}"
            ledger[e.order_id].canceled += e.qty
    for oid, entry in ledger.items():
        open_qty = book.orders[oid].leaves if oid in book.orders else 0
        assert entry.filled + open_qty + entry.canceled == entry.qty, f"{oid}: {entry}, {open_qty} open"


def outcome(o: NewOrder, ev: list[AnyEvent], book: Book) -> Outcome:
    """What the book did with a submission, in the model's terms."""
    mine = [e for e in ev if not isinstance(e, TradePrint | BookDelta) and e.order_id == o.order_id]
    rejected = [e.reason for e in mine if isinstance(e, Rejected)]
    canceled = [(e.reason, e.qty) for e in mine if isinstance(e, Canceled)]
    return Outcome(rejected[0] if rejected else None,
                   [(e.order_id, e.price, e.qty) for e in ev if isinstance(e, Filled) and e.maker],
                   [e.order_id for e in ev if isinstance(e, Canceled) and e.order_id != o.order_id],
                   canceled[0] if canceled else None, o.order_id in book.orders)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_commands)
@example([  # the FOK used to fill 3, then meet its own order and lose the rest to STP
    ("submit", False, Kind.LIMIT, Tif.GTC, 3, 100, None, Stp.CANCEL_NEWEST, "B", False),
    ("submit", False, Kind.LIMIT, Tif.GTC, 5, 100, None, Stp.CANCEL_NEWEST, "A", False),
    ("submit", False, Kind.LIMIT, Tif.GTC, 5, 101, None, Stp.CANCEL_NEWEST, "B", False),
    ("submit", True, Kind.LIMIT, Tif.FOK, 6, 101, None, Stp.CANCEL_NEWEST, "A", False),
])
def test_fills_priority_stp_post_only_ioc_fok_and_quantities_agree_with_a_model(
        cmds: list[tuple[Any, ...]]) -> None:
    book, model = Book("X"), ModelBook()
    ledger: dict[str, Ledger] = {}
    ids: list[str] = []
    owners: dict[str, str] = {}
    for i, c in enumerate(cmds):
        before = model.copy()
        expected: object
        actual: object
        if c[0] == "submit":
            o = new_order(i, c, i)
            ids.append(o.order_id)
            owners[o.order_id] = o.account_id
            expected = model.submit(dataclasses.replace(o))
            ev = book.submit(o, i)
            actual = outcome(o, ev, book)
        else:
            oid = ids[c[1] % len(ids)] if ids else "o0"
            acct = owners.get(oid, "A") if c[1] % 10 else "intruder"
            ev = book.cancel(oid, acct, i)
            gone = model.resting.get(oid)
            if gone is not None and gone.account_id == acct:
                del model.resting[oid]
                expected = [(Canceled, gone.leaves)]
            else:
                expected = [(Rejected, 0)]
            actual = [(type(e), getattr(e, "qty", 0)) for e in ev if not isinstance(e, BookDelta)]
        check_conservation(ev, ledger, book)
        check_structure(book)  # a crossed book among others
        if c[0] == "submit":
            check_submission(o, ev, before, book)
        # Last, so that a property above names what went wrong: the model predicted it all.
        assert actual == expected, "the book and the model disagree"
        assert book.depth() == model.depth(), "the book's depth differs from the model's"

# Ticks of 0.01 and lots of 0.001 are not binary fractions: 100.07 or 0.009 that went through a float
# come out as 100.07000000000001 or 0.009000000000000001.
CENTS = BTC.model_copy(update={"tick_size": Decimal("0.01"), "min_notional": Decimal(0)})
wire_submit = st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(1, 20), st.integers(10_005, 10_011),
                        st.sampled_from(ACCOUNTS), st.booleans())


@settings(max_examples=100, deadline=None)
@given(st.lists(wire_submit, min_size=2, max_size=40))
def test_records_carry_exact_decimals_never_floats(cmds: list[tuple[str, int, int, str, bool]]) -> None:
    m = Matcher()
    m.set_instrument(CENTS)
    submitted: dict[str, r.SubmitOrder] = {}
    filled: dict[str, Decimal] = defaultdict(Decimal)
    for n, (side, lots, ticks, acct, market) in enumerate(cmds):
        price = None if market else str(ticks * CENTS.tick_size)
        qty = str(lots * CENTS.lot_size)
        cmd = submit_order(n, side, qty, price, acct=acct, self_trade_prevention="NONE")
        submitted[cmd.order_id] = cmd
        for out in m.handle(cmd, n):
            rec = out.record
            for name, value in rec:
                assert not isinstance(value, float), f"{type(rec).__name__}.{name} is a float"
            if isinstance(rec, r.OrderFilled):
                assert type(rec.fill_price) is Decimal and type(rec.fill_quantity) is Decimal
                if rec.liquidity is r.Liquidity.MAKER:
                    assert rec.fill_price == submitted[rec.order_id].price, "fill price off the maker's price"
                filled[rec.order_id] += rec.fill_quantity
                assert filled[rec.order_id] + rec.leaves_quantity == submitted[rec.order_id].quantity

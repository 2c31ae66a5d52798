"""A price-time-priority order book for one symbol: commands in, events out, no I/O.

Each side keeps a dict price -> Level and a sorted list of its prices with the
best price last (bids ascending, asks as negated prices ascending), so the
best level is found and dropped in O(1). A level is a FIFO deque; a cancel
marks the order dead in O(1) and the dead entry is dropped when it reaches
the head (lazy deletion), so the level's `live` count and `total` stay exact.

Every command returns its events in order: order events, then the trade
prints, then one BookDelta with the net change of every touched level. The
book also records which orders changed (`drain_dirty`), so a caller can
persist a change that grows with the command, not with the book.

Hot paths (a resting limit order, a cancel, the matching loop) are written
out inline with their state bound to locals: a plain good-till-canceled limit
order that does not cross, and a cancel, build their BookDelta directly when
nothing else changed in the command. Enum members are read from module
constants (an enum attribute read costs several times a global read).
"""

from __future__ import annotations

import dataclasses
import heapq
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Iterable

from orderstream.matcher.domain.model import (
    LIMIT_PRICED_KINDS,
    TRIGGERED_KINDS,
    Accepted,
    AnyEvent,
    BookDelta,
    Canceled,
    Expired,
    Filled,
    Kind,
    Meta,
    NewOrder,
    Order,
    Reason,
    Rejected,
    Replaced,
    Stp,
    Tif,
    TradePrint,
    Triggered,
)

PPM = 1_000_000
STOP_KINDS = frozenset({Kind.STOP_MARKET, Kind.STOP_LIMIT, Kind.TRAILING_STOP})

_LIMIT = Kind.LIMIT
_MARKET = Kind.MARKET
_GTC = Tif.GTC
_GTD = Tif.GTD
_IOC = Tif.IOC
_FOK = Tif.FOK
_STP_NONE = Stp.NONE
_CANCEL_NEWEST = Stp.CANCEL_NEWEST
_CANCEL_OLDEST = Stp.CANCEL_OLDEST
_CANCEL_BOTH = Stp.CANCEL_BOTH
_CLIENT_REQUEST = Reason.CLIENT_REQUEST
_SELF_TRADE_PREVENTION = Reason.SELF_TRADE_PREVENTION
_QUOTE_BUDGET_EXHAUSTED = Reason.QUOTE_BUDGET_EXHAUSTED
_IOC_FOK = (Tif.IOC, Tif.FOK)


class Level:
    __slots__ = ("live", "orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[Order] = deque()
        self.total = 0  # visible open quantity of live orders
        self.live = 0  # live orders in the deque


class Side:
    __slots__ = ("is_bid", "keys", "levels")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.keys: list[int] = []  # best last: bids as prices, asks as negated prices

    def best(self) -> Level | None:
        if not self.keys:
            return None
        k = self.keys[-1]
        return self.levels[k if self.is_bid else -k]

    def level_for(self, price: int) -> Level:
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = Level(price)
            insort(self.keys, price if self.is_bid else -price)
        return level

    def drop(self, level: Level) -> None:
        del self.levels[level.price]
        k = level.price if self.is_bid else -level.price
        if self.keys[-1] == k:
            self.keys.pop()
        else:
            del self.keys[bisect_left(self.keys, k)]

    def prices(self) -> list[int]:
        """Prices best first."""
        return [k if self.is_bid else -k for k in reversed(self.keys)]


class Book:
    """The order book of one symbol."""

    def __init__(self, symbol: str, *, band_ppm: int = 50_000, meta: Meta | None = None) -> None:
        self.symbol = symbol
        self.band_ppm = band_ppm  # market orders trade at most this far from the best price
        self.meta = meta or Meta()
        self.bids = Side(True)
        self.asks = Side(False)
        self.orders: dict[str, Order] = {}  # live resting and pending (untriggered) orders
        self.pending: dict[str, Order] = {}  # stop, take-profit and trailing orders, by id
        self._expiries: list[tuple[int, int, str]] = []  # (expire_at, priority, order_id)
        self._events: list[AnyEvent] = []
        # level (price << 1 | is_bid) -> its total before its first change in this command
        self._touched: dict[int, int] = {}
        self._dirty: dict[str, Order | None] = {}
        # order lists, within one command: a bracket entry's fills not yet given to its exits, and
        # the lists that ended (an order of theirs executed or left): their exits must not grow
        self._growth: dict[str, tuple[Order, int]] = {}
        self._ended: set[str] = set()

    # -- commands -------------------------------------------------------------

    def submit(self, cmd: NewOrder, now: int = 0) -> list[AnyEvent]:
        """Place an order; the events it caused."""
        expiries = self._expiries
        if expiries and expiries[0][0] <= now:
            self._expire(now)
        o = cmd
        price = o.price
        leaves = o.qty - o.filled
        if (o.kind is not _LIMIT or o.tif is not _GTC or price is None or price <= 0 or o.qty <= 0
                or o.display is not None or o.budget is not None or o.post_only or leaves <= 0
                or o.order_id in self.orders or o.group is not None):
            return self._submit(o, now)
        # A plain good-till-canceled limit order, valid (what `_invalid` lets through first).
        meta = self.meta
        meta.priority += 1
        o.priority = meta.priority
        o.seq += 1
        events = self._events
        is_buy = o.is_buy
        events.append(Accepted(o.order_id, o.account_id, o.client_order_id, o.seq,
                               is_buy, _LIMIT, _GTC, o.qty, price))
        if is_buy:
            keys = self.asks.keys
            crosses = bool(keys) and price >= -keys[-1]
        else:
            keys = self.bids.keys
            crosses = bool(keys) and price <= keys[-1]
        if crosses or self._touched or self.pending:
            self._execute(o)
            if self.pending:
                self._run_triggers()
            return self._finish()
        # It rests whole, and its level is the only one this command changes. `_rest` inlined on
        # purpose: most commands are this, and the calls and the `_touch` bookkeeping were a fifth
        # of an add (bench/bench_book.py); `_rest` stays the one path for every other case.
        side = self.bids if is_buy else self.asks
        level = side.levels.get(price)
        if level is None:
            level = side.levels[price] = Level(price)
            insort(side.keys, price if is_buy else -price)
        o.visible = leaves
        o.pending = False
        level.orders.append(o)
        level.total += leaves
        level.live += 1
        self.orders[o.order_id] = o
        self._dirty[o.order_id] = o
        if o.expire_at is not None:
            heapq.heappush(expiries, (o.expire_at, o.priority, o.order_id))
        meta.md_seq += 1
        events.append(BookDelta(((is_buy, price, level.total),), meta.md_seq))
        self._events = []
        return events

    def _submit(self, cmd: NewOrder, now: int, flush: bool = True) -> list[AnyEvent]:
        """`submit` of any order (its expiries already run); `flush`: end the command."""
        reason = self._invalid(cmd, now)
        if reason is not None:
            self._events.append(Rejected(cmd.order_id, cmd.account_id, cmd.client_order_id, 1,
                                         reason[0], reason[1], "SubmitOrder"))
            if cmd.group is not None and cmd.exits is None:
                self._linked_done(cmd)  # a list's leg refused: its other legs go too
            return self._finish() if flush else []
        o = cmd
        self.meta.priority += 1
        o.priority = self.meta.priority
        if o.post_only and self._would_take(o, o.price):
            self._events.append(Rejected(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                         Reason.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity",
                                         "SubmitOrder"))
            return self._finish() if flush else []
        o.seq += 1
        self._events.append(Accepted(o.order_id, o.account_id, o.client_order_id, o.seq,
                                     o.is_buy, o.kind, o.tif, o.qty, o.price))
        if o.kind in TRIGGERED_KINDS:
            self._park(o)
        else:
            self._execute(o)
        if self.pending:
            self._run_triggers()
        return self._finish() if flush else []

    def submit_list(self, group: str, oco: bool, orders: list[NewOrder], now: int = 0) -> list[AnyEvent]:
        """Place an order list: an OCO's legs (triggered ones first, so that a leg that trades at once
        finds its sibling to cancel), or a bracket's entry, whose `exits` the book places as it fills."""
        if self._expiries and self._expiries[0][0] <= now:
            self._expire(now)
        for o in orders:
            o.group = group
        placed = sorted(orders, key=lambda o: o.kind not in TRIGGERED_KINDS) if oco else orders[:1]
        for o in placed:
            if group in self._ended:  # an earlier leg traded at once: this one is done before it rests
                self._events.append(Accepted(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                             o.is_buy, o.kind, o.tif, o.qty, o.price))
                self._events.append(Canceled(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                             o.qty, Reason.LINKED_ORDER_EXECUTED))
                continue
            self._submit(o, now, flush=False)
        return self._finish()

    def cancel(self, order_id: str, account_id: str, now: int = 0) -> list[AnyEvent]:
        """Cancel an open order of `account_id`; an order list's id cancels every open order of it."""
        if self._expiries and self._expiries[0][0] <= now:
            self._expire(now)
        o = self.orders.get(order_id)
        if o is None:
            members = [m for m in self._members(order_id) if m.account_id == account_id]
            if members:
                self._ended.add(order_id)
                for m in members:
                    if m.live:
                        self._remove(m, _CLIENT_REQUEST)
                return self._finish()
        if o is None or o.account_id != account_id:
            self._reject_unknown(order_id, account_id, "CancelOrder")
            return self._finish()
        if o.pending or self._touched or o.group is not None:
            self._remove(o, _CLIENT_REQUEST)
            return self._finish()
        # A resting order, and its level is the only one this command changes (`_remove` inline).
        leaves = o.qty - o.filled
        o.live = False
        is_buy = o.is_buy
        side = self.bids if is_buy else self.asks
        price = o.price
        assert price is not None
        level = side.levels[price]
        before = level.total
        level.total = before - o.visible
        level.live -= 1
        if level.live == 0:
            side.drop(level)
            after = 0
        else:
            after = level.total
            if level.orders[-1] is o:
                level.orders.pop()
        del self.orders[o.order_id]
        self._dirty[o.order_id] = None
        o.seq += 1
        events = self._events
        events.append(Canceled(o.order_id, o.account_id, o.client_order_id, o.seq, leaves, _CLIENT_REQUEST))
        if after != before:
            meta = self.meta
            meta.md_seq += 1
            events.append(BookDelta(((is_buy, price, after),), meta.md_seq))
        self._events = []
        return events

    def replace(self, order_id: str, account_id: str, qty: int | None, price: int | None,
                now: int = 0) -> list[AnyEvent]:
        """Change quantity and/or price; a lower quantity at the same price keeps time priority."""
        self._expire(now)
        o = self.orders.get(order_id)
        if o is None or o.account_id != account_id:
            self._reject_unknown(order_id, account_id, "ReplaceOrder")
            return self._finish()
        new_qty = o.qty if qty is None else qty
        new_price = o.price if price is None else price
        problem = None
        if o.group is not None:
            problem = (Reason.LINKED_ORDER, "an order of a list cannot be replaced: cancel the list and "
                                            "place it again")
        elif new_qty <= o.filled:
            problem = (Reason.INVALID_QUANTITY, f"quantity {new_qty} not above the filled {o.filled}")
        elif price is not None and (o.kind not in LIMIT_PRICED_KINDS or price <= 0):
            problem = (Reason.INVALID_PRICE, "only a limit price can be replaced, and it must be > 0")
        elif o.post_only and not o.pending and new_price != o.price and self._would_take(o, new_price):
            problem = (Reason.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity")
        if problem is not None:
            self._events.append(Rejected(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                         problem[0], problem[1], "ReplaceOrder"))
            self._dirty[o.order_id] = o  # its sequence number moved on
            return self._finish()
        keep = new_price == o.price and new_qty <= o.qty
        if o.pending or keep:
            if not o.pending:
                shown = min(o.visible, new_qty - o.filled)
                self._adjust_visible(o, shown - o.visible)
            o.qty, o.price = new_qty, new_price
            self._dirty[o.order_id] = o
            self._events.append(Replaced(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                         o.qty, o.price, o.leaves, True))
        else:
            self._unlink(o)
            # A new object takes the new place: the old one stays dead in its old queue.
            n = dataclasses.replace(o, qty=new_qty, price=new_price, live=True,
                                    priority=self._next_priority())
            self._events.append(Replaced(n.order_id, n.account_id, n.client_order_id, n.next_seq(),
                                         n.qty, n.price, n.leaves, False))
            self._execute(n)
        self._run_triggers()
        return self._finish()

    def expire(self, now: int) -> list[AnyEvent]:
        """Expire every GTD order whose time has come."""
        self._expire(now)
        return self._finish()

    # -- state ----------------------------------------------------------------

    def drain_dirty(self) -> dict[str, Order | None]:
        """Orders changed since the last call (None: gone from the book)."""
        dirty, self._dirty = self._dirty, {}
        return dirty

    @classmethod
    def restore(cls, symbol: str, meta: Meta, orders: Iterable[Order], *, band_ppm: int = 50_000) -> Book:
        """A book with exactly the given orders, in their time priority."""
        book = cls(symbol, band_ppm=band_ppm, meta=meta)
        for o in sorted(orders, key=lambda x: x.priority):
            book.orders[o.order_id] = o
            if o.pending:
                book.pending[o.order_id] = o
            else:
                book._link(o, o.visible)
            if o.expire_at is not None:
                heapq.heappush(book._expiries, (o.expire_at, o.priority, o.order_id))
        book._touched.clear()
        book._dirty.clear()
        return book

    def depth(self, limit: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids, asks) as (price, visible quantity), best first."""
        def side(s: Side) -> list[tuple[int, int]]:
            return [(p, s.levels[p].total) for p in s.prices()[:limit]]
        return side(self.bids), side(self.asks)

    def next_expiry(self) -> int | None:
        """The earliest GTD expiry time still scheduled (it may belong to a gone order)."""
        return self._expiries[0][0] if self._expiries else None

    def best_bid(self) -> int | None:
        lvl = self.bids.best()
        return lvl.price if lvl else None

    def best_ask(self) -> int | None:
        lvl = self.asks.best()
        return lvl.price if lvl else None

    # -- internals ------------------------------------------------------------

    def _invalid(self, cmd: NewOrder, now: int) -> tuple[str, str] | None:
        if cmd.order_id in self.orders:
            return Reason.DUPLICATE_ORDER_ID, f"order {cmd.order_id} is already open"
        if (cmd.kind is Kind.LIMIT and cmd.tif is Tif.GTC and cmd.qty > 0 and cmd.price is not None
                and cmd.price > 0 and cmd.display is None and cmd.budget is None):
            return None  # the common case: a plain resting limit order
        if (cmd.qty > 0 and cmd.display is None and cmd.budget is None and not cmd.post_only
                and cmd.tif is not _GTD):  # a plain taker: every check below passes when...
            if cmd.kind is _LIMIT:
                if cmd.price is not None and cmd.price > 0:  # ...a limit order has a price
                    return None
            elif cmd.kind is _MARKET and cmd.price is None:  # ...a market order has none
                return None
        if cmd.qty <= 0:
            return Reason.INVALID_QUANTITY, "quantity must be > 0"
        if cmd.kind in LIMIT_PRICED_KINDS and (cmd.price is None or cmd.price <= 0):
            return Reason.MISSING_PRICE, f"{cmd.kind.name} needs a price > 0"
        if cmd.kind not in LIMIT_PRICED_KINDS and cmd.price is not None:
            return Reason.INVALID_ORDER, f"{cmd.kind.name} takes no limit price"
        if cmd.kind in TRIGGERED_KINDS - {Kind.TRAILING_STOP} and (cmd.stop_price or 0) <= 0:
            return Reason.MISSING_STOP_PRICE, f"{cmd.kind.name} needs a stop price > 0"
        if cmd.kind is Kind.TRAILING_STOP and (cmd.trail or 0) <= 0 and (cmd.trail_ppm or 0) <= 0:
            return Reason.INVALID_ORDER, "TRAILING_STOP needs a trailing offset > 0"
        if cmd.tif is Tif.GTD and (cmd.expire_at is None or cmd.expire_at <= now):
            return Reason.INVALID_EXPIRY, "GTD needs an expiry time in the future"
        if cmd.post_only and (cmd.kind is not Kind.LIMIT or cmd.tif in (Tif.IOC, Tif.FOK)):
            return Reason.INVALID_ORDER, "post-only applies to resting limit orders"
        if cmd.display is not None and not (0 < cmd.display < cmd.qty and cmd.kind is Kind.LIMIT):
            return Reason.INVALID_ORDER, "iceberg display must be > 0 and < quantity, on a limit order"
        if cmd.budget is not None and (cmd.budget <= 0 or cmd.kind is not Kind.MARKET or not cmd.is_buy):
            return Reason.INVALID_ORDER, "a quote budget applies to market buys and must be > 0"
        return None

    def _next_priority(self) -> int:
        self.meta.priority += 1
        return self.meta.priority

    def _reject_unknown(self, order_id: str, account_id: str, command: str) -> None:
        self._events.append(Rejected(order_id, account_id, "", 0, Reason.UNKNOWN_ORDER,
                                     f"no open order {order_id} for this account", command))

    def _would_take(self, o: Order, price: int | None) -> bool:
        best = (self.asks if o.is_buy else self.bids).best()
        if best is None or price is None:
            return best is not None
        return price >= best.price if o.is_buy else price <= best.price

    def _execute(self, o: Order) -> None:
        """Match `o` as the taker, then rest or cancel what is left."""
        limit = o.price
        protected = False
        is_buy = o.is_buy
        if o.kind is _MARKET:
            keys = (self.asks if is_buy else self.bids).keys
            if not keys:
                self._cancel_taker(o, Reason.NO_LIQUIDITY)
                return
            best = -keys[-1] if is_buy else keys[-1]
            band = best * self.band_ppm // PPM
            limit = best + band if is_buy else max(1, best - band)
            protected = True
        tif = o.tif
        if tif is _FOK and self._available(o, limit) < o.qty - o.filled:
            self._cancel_taker(o, Reason.FOK_UNFILLED)
            return
        stopped = self._match(o, limit)
        leaves = o.qty - o.filled
        if leaves == 0:
            self.orders.pop(o.order_id, None)
            self._dirty[o.order_id] = None
            return
        if stopped is not None:
            self._cancel_taker(o, stopped)
        elif protected or tif in _IOC_FOK:
            taken_all = not (self.asks if is_buy else self.bids).keys
            reason = (Reason.IOC_REMAINDER if not protected else
                      Reason.NO_LIQUIDITY if taken_all else Reason.MARKET_PROTECTION)
            self._cancel_taker(o, reason)
        else:
            shown = leaves if o.display is None else min(o.display, leaves)
            self._link(o, shown)
            if o.expire_at is not None:
                heapq.heappush(self._expiries, (o.expire_at, o.priority, o.order_id))

    def _available(self, o: Order, limit: int | None) -> int:
        """Quantity `o` could take up to `limit` (hidden reserves included, own orders excluded).

        Under CANCEL_NEWEST and CANCEL_BOTH matching stops at the first own order, so the count
        does too, and the orders ahead of it in its level count only their shown slice: an
        iceberg's next slice would join the queue behind it.
        """
        side = self.asks if o.is_buy else self.bids
        acct = o.account_id
        stp = o.stp
        total = 0
        for price in side.prices():
            if limit is not None and (price > limit if o.is_buy else price < limit):
                break
            live = [m for m in side.levels[price].orders if m.live]
            if stp is _CANCEL_NEWEST or stp is _CANCEL_BOTH:
                own = next((n for n, m in enumerate(live) if m.account_id == acct), None)
                if own is not None:
                    return total + sum(m.visible for m in live[:own])
            total += sum(m.leaves for m in live if m.account_id != acct or stp is _STP_NONE)
            if total >= o.leaves:
                break
        return total

    def _match(self, o: Order, limit: int | None) -> str | None:
        """Trade `o` against the other side; a reason when matching stopped early."""
        is_buy = o.is_buy
        side = self.asks if is_buy else self.bids
        keys = side.keys
        levels = side.levels
        touched = self._touched
        dirty = self._dirty
        events = self._events
        meta = self.meta
        symbol = self.symbol
        oid = o.order_id
        acct = o.account_id
        coid = o.client_order_id
        stp = o.stp
        maker_is_buy = not is_buy
        oqty = o.qty  # the taker's quantity does not change while it matches; o.filled is kept current
        filled = o.filled
        while oqty > filled:
            if not keys:
                return None
            k = keys[-1]
            price = -k if is_buy else k
            if limit is not None and (price > limit if is_buy else price < limit):
                return None
            level = levels[price]
            tkey = price << 1 | maker_is_buy  # the level's key in `_touched`
            orders = level.orders
            while oqty > filled and level.live:
                m = orders[0]
                if not m.live:
                    orders.popleft()
                    continue
                if stp is not _STP_NONE and m.account_id == acct:
                    if stp is not _CANCEL_NEWEST:
                        self._remove(m, _SELF_TRADE_PREVENTION)
                    if stp is not _CANCEL_OLDEST:
                        return _SELF_TRADE_PREVENTION
                    continue
                want = oqty - filled
                visible = m.visible
                qty = want if want < visible else visible
                if o.budget is not None:
                    qty = min(qty, o.budget // price)
                    if qty == 0:
                        return _QUOTE_BUDGET_EXHAUSTED
                    o.budget -= qty * price
                # the trade (taker `o`, maker `m`)
                meta.trade_seq += 1
                trade_id = f"{symbol}-{meta.trade_seq}"
                if tkey not in touched:
                    touched[tkey] = level.total
                m.filled += qty
                visible -= qty
                m.visible = visible
                level.total -= qty
                filled += qty
                o.filled = filled
                mid = m.order_id
                dirty[mid] = m
                dirty[oid] = o
                o.seq += 1
                m.seq += 1
                events.append(Filled(oid, acct, coid, o.seq, trade_id, is_buy, price, qty,
                                     oqty - filled, False, m.account_id))
                events.append(Filled(mid, m.account_id, m.client_order_id, m.seq, trade_id, m.is_buy,
                                     price, qty, m.qty - m.filled, True, acct))
                # an order of a list: its siblings go now, before this match can reach them
                if o.group is not None:
                    self._linked_fill(o, qty)
                if m.group is not None:
                    self._linked_fill(m, qty)
                meta.md_seq += 1
                events.append(TradePrint(trade_id, price, qty, is_buy, meta.md_seq))
                meta.last_price = price
                if visible == 0:
                    orders.popleft()
                    if m.qty > m.filled:  # iceberg: next slice joins the back of the queue
                        m.priority = self._next_priority()
                        m.visible = min(m.display or m.leaves, m.leaves)
                        orders.append(m)
                        level.total += m.visible
                    else:
                        m.live = False
                        level.live -= 1
                        del self.orders[mid]
                        dirty[mid] = None
            if not level.live and levels.get(price) is level:
                side.drop(level)
        return None

    def _touch(self, is_bid: bool, level: Level) -> None:
        """Remember a level's total before its first change in this command."""
        key = level.price << 1 | is_bid
        if key not in self._touched:
            self._touched[key] = level.total

    def _link(self, o: Order, visible: int) -> None:
        """Put `o` at the back of its level with `visible` shown."""
        side = self.bids if o.is_buy else self.asks
        assert o.price is not None
        level = side.level_for(o.price)
        self._touch(o.is_buy, level)
        o.visible = visible
        o.pending = False
        level.orders.append(o)
        level.total += visible
        level.live += 1
        self.orders[o.order_id] = o
        self._dirty[o.order_id] = o

    def _unlink(self, o: Order) -> None:
        """Take `o` out of its level (it stays known to the caller)."""
        o.live = False
        if o.pending:
            del self.pending[o.order_id]
        else:
            side = self.bids if o.is_buy else self.asks
            assert o.price is not None
            level = side.levels[o.price]
            self._touch(o.is_buy, level)
            level.total -= o.visible
            level.live -= 1
            if level.live == 0:
                side.drop(level)
            elif level.orders[-1] is o:
                level.orders.pop()
            # else: the dead entry leaves the deque when it reaches the head.
        del self.orders[o.order_id]
        self._dirty[o.order_id] = None

    def _adjust_visible(self, o: Order, delta: int) -> None:
        side = self.bids if o.is_buy else self.asks
        assert o.price is not None
        level = side.levels[o.price]
        self._touch(o.is_buy, level)
        o.visible += delta
        level.total += delta

    def _remove(self, o: Order, reason: str) -> None:
        leaves = o.leaves
        self._unlink(o)
        self._events.append(Canceled(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                     leaves, reason))
        if o.group is not None and o.exits is None:
            self._linked_done(o)

    def _cancel_taker(self, o: Order, reason: str) -> None:
        """Cancel what is left of an order that is not (yet) in the book."""
        o.live = False
        self.orders.pop(o.order_id, None)
        self._dirty[o.order_id] = None
        o.seq += 1
        self._events.append(Canceled(o.order_id, o.account_id, o.client_order_id, o.seq,
                                     o.qty - o.filled, reason))
        if o.group is not None and o.exits is None:
            self._linked_done(o)

    # -- order lists ------------------------------------------------------------

    def _members(self, group: str) -> list[Order]:
        """The resting orders of a list (a bracket: /0 entry, /1 take-profit, /2 stop-loss): waiting
        for their trigger or in a level, not one being matched as the taker right now."""
        found = (self.orders.get(f"{group}/{n}") for n in range(3))
        return [o for o in found if o is not None and (o.pending or o.visible > 0)]

    def _linked_fill(self, o: Order, qty: int) -> None:
        """`o`, an order of a list, traded `qty`: a bracket's entry owes its exits that much more;
        an OCO leg or an exit ends the list."""
        assert o.group is not None
        if o.exits is None:
            self._linked_done(o)
        elif o.group not in self._ended:
            _, owed = self._growth.get(o.group, (o, 0))
            self._growth[o.group] = (o, owed + qty)

    def _linked_done(self, o: Order) -> None:
        """An OCO leg or a bracket exit traded, triggered or left the book: every other open order
        of its list is canceled (a bracket's entry too: the position it opened is being closed)."""
        assert o.group is not None
        if o.group in self._ended:
            return  # ended already in this command (its other orders are going now)
        self._ended.add(o.group)
        self._growth.pop(o.group, None)
        for m in self._members(o.group):
            if m is not o and m.live:
                self._remove(m, Reason.LINKED_ORDER_EXECUTED)

    def _grow_exits(self) -> None:
        """Give each bracket entry's new fills to its exits: place them for the quantity filled so
        far, or grow them by what filled since (a resting take-profit goes to the back of its level)."""
        while self._growth:
            group, (entry, qty) = self._growth.popitem()
            assert entry.exits is not None
            base = entry.client_order_id.rpartition("/")[0]
            for n, (kind, price, stop) in enumerate(entry.exits, 1):
                oid = f"{group}/{n}"
                x = self.orders.get(oid)
                if x is None:
                    x = Order(oid, entry.account_id, f"{base}/{n}", not entry.is_buy, qty, Kind(kind or 0),
                              price=price, stop_price=stop, stp=entry.stp, group=group)
                    self.meta.priority += 1
                    x.priority = self.meta.priority
                    self._events.append(Accepted(x.order_id, x.account_id, x.client_order_id, x.next_seq(),
                                                 x.is_buy, x.kind, x.tif, x.qty, x.price))
                    if group in self._ended:  # the exit placed before it traded at once: this one is done
                        self._events.append(Canceled(oid, x.account_id, x.client_order_id, x.next_seq(), qty,
                                                     Reason.LINKED_ORDER_EXECUTED))
                    elif x.kind in TRIGGERED_KINDS:
                        self._park(x)
                    else:
                        self._execute(x)
                elif group in self._ended:
                    continue
                elif x.pending:
                    x.qty += qty
                    self._dirty[oid] = x
                    self._events.append(Replaced(oid, x.account_id, x.client_order_id, x.next_seq(),
                                                 x.qty, x.price, x.leaves, True))
                else:
                    self._unlink(x)
                    x = dataclasses.replace(x, qty=x.qty + qty, live=True, priority=self._next_priority())
                    self._events.append(Replaced(oid, x.account_id, x.client_order_id, x.next_seq(),
                                                 x.qty, x.price, x.leaves, False))
                    self._execute(x)

    def _park(self, o: Order) -> None:
        """Hold a stop/take-profit/trailing order until the last price triggers it."""
        o.pending = True
        if o.kind is Kind.TRAILING_STOP and self.meta.last_price is not None:
            o.stop_price = self._trail_stop(o, self.meta.last_price, None)
        self.orders[o.order_id] = o
        self.pending[o.order_id] = o
        self._dirty[o.order_id] = o
        if o.expire_at is not None:
            heapq.heappush(self._expiries, (o.expire_at, o.priority, o.order_id))

    def _trail_stop(self, o: Order, last: int, current: int | None) -> int:
        dist = o.trail if o.trail else last * (o.trail_ppm or 0) // PPM
        if o.is_buy:
            cand = last + dist
            return cand if current is None else min(current, cand)
        cand = max(1, last - dist)
        return cand if current is None else max(current, cand)

    def _run_triggers(self) -> None:
        """Trigger pending orders against the last price until none fires (cascades included)."""
        while self.pending and self.meta.last_price is not None:
            last = self.meta.last_price
            fired = []
            for o in self.pending.values():
                if o.kind is Kind.TRAILING_STOP:
                    new = self._trail_stop(o, last, o.stop_price)
                    if new != o.stop_price:
                        o.stop_price = new
                        self._dirty[o.order_id] = o
                stop = o.stop_price
                assert stop is not None
                # Stops fire on a move against the position they protect, take-profits on one for it.
                up = (o.kind in STOP_KINDS) == o.is_buy
                if (last >= stop) if up else (last <= stop):
                    fired.append(o)
            if not fired:
                return
            fired.sort(key=lambda x: x.priority)
            for o in fired:
                if o.order_id not in self.pending:
                    continue
                del self.pending[o.order_id]
                o.pending = False
                self._events.append(Triggered(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                              last))
                if o.group is not None and o.exits is None:
                    self._linked_done(o)
                o.kind = Kind.LIMIT if o.kind in LIMIT_PRICED_KINDS else Kind.MARKET
                o.priority = self._next_priority()  # time priority starts when it reaches the book
                self._dirty[o.order_id] = o
                self._execute(o)
            if self.meta.last_price == last:
                return

    def _expire(self, now: int) -> None:
        heap = self._expiries
        while heap and heap[0][0] <= now:
            _, _, order_id = heapq.heappop(heap)
            o = self.orders.get(order_id)
            if o is None or o.expire_at is None or o.expire_at > now:
                continue
            leaves = o.leaves
            self._unlink(o)
            self._events.append(Expired(o.order_id, o.account_id, o.client_order_id, o.next_seq(), leaves))
            if o.group is not None and o.exits is None:
                self._linked_done(o)

    def _finish(self) -> list[AnyEvent]:
        while self._growth:  # exits may trade at once, and their trades trigger others
            self._grow_exits()
            if self.pending:
                self._run_triggers()
        self._ended.clear()
        events = self._events
        touched = self._touched
        if touched:
            changes = []
            bids, asks = self.bids.levels, self.asks.levels
            for key, before in touched.items():
                price = key >> 1
                is_bid = key & 1 == 1
                level = (bids if is_bid else asks).get(price)
                now = level.total if level is not None else 0
                if now != before:
                    changes.append((is_bid, price, now))
            self._touched = {}
            if changes:
                self.meta.md_seq += 1
                events.append(BookDelta(tuple(changes), self.meta.md_seq))
        self._events = []
        return events


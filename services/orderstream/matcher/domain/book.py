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
        self._touched: dict[tuple[bool, int], int] = {}  # level -> total before the command
        self._dirty: dict[str, Order | None] = {}

    # -- commands -------------------------------------------------------------

    def submit(self, cmd: NewOrder, now: int = 0) -> list[AnyEvent]:
        """Place an order; the events it caused."""
        if self._expiries and self._expiries[0][0] <= now:
            self._expire(now)
        reason = self._invalid(cmd, now)
        if reason is not None:
            self._events.append(Rejected(cmd.order_id, cmd.account_id, cmd.client_order_id, 1,
                                         reason[0], reason[1], "SubmitOrder"))
            return self._finish()
        o = cmd
        self.meta.priority += 1
        o.priority = self.meta.priority
        if o.post_only and self._would_take(o, o.price):
            self._events.append(Rejected(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                         Reason.POST_ONLY_WOULD_TAKE, "post-only order would take liquidity",
                                         "SubmitOrder"))
            return self._finish()
        o.seq += 1
        self._events.append(Accepted(o.order_id, o.account_id, o.client_order_id, o.seq,
                                     o.is_buy, o.kind, o.tif, o.qty, o.price))
        if o.kind in TRIGGERED_KINDS:
            self._park(o)
        else:
            self._execute(o)
        if self.pending:
            self._run_triggers()
        return self._finish()

    def cancel(self, order_id: str, account_id: str, now: int = 0) -> list[AnyEvent]:
        """Cancel an open order of `account_id`."""
        if self._expiries and self._expiries[0][0] <= now:
            self._expire(now)
        o = self.orders.get(order_id)
        if o is None or o.account_id != account_id:
            self._reject_unknown(order_id, account_id, "CancelOrder")
        else:
            self._remove(o, Reason.CLIENT_REQUEST)
        return self._finish()

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
        if new_qty <= o.filled:
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
        if o.kind is Kind.MARKET:
            best = (self.asks if o.is_buy else self.bids).best()
            if best is None:
                self._cancel_taker(o, Reason.NO_LIQUIDITY)
                return
            band = best.price * self.band_ppm // PPM
            limit = best.price + band if o.is_buy else max(1, best.price - band)
            protected = True
        if o.tif is Tif.FOK and self._available(o, limit) < o.leaves:
            self._cancel_taker(o, Reason.FOK_UNFILLED)
            return
        stopped = self._match(o, limit)
        if o.leaves == 0:
            self.orders.pop(o.order_id, None)
            self._dirty[o.order_id] = None
            return
        if stopped is not None:
            self._cancel_taker(o, stopped)
        elif protected or o.tif in (Tif.IOC, Tif.FOK):
            taken_all = (self.asks if o.is_buy else self.bids).best() is None
            reason = (Reason.IOC_REMAINDER if not protected else
                      Reason.NO_LIQUIDITY if taken_all else Reason.MARKET_PROTECTION)
            self._cancel_taker(o, reason)
        else:
            shown = o.leaves if o.display is None else min(o.display, o.leaves)
            self._link(o, shown)
            if o.expire_at is not None:
                heapq.heappush(self._expiries, (o.expire_at, o.priority, o.order_id))

    def _available(self, o: Order, limit: int | None) -> int:
        """Quantity `o` could take up to `limit` (hidden reserves included, own orders excluded)."""
        side = self.asks if o.is_buy else self.bids
        total = 0
        for price in side.prices():
            if limit is not None and (price > limit if o.is_buy else price < limit):
                break
            for m in side.levels[price].orders:
                if m.live and (m.account_id != o.account_id or o.stp is Stp.NONE):
                    total += m.leaves
            if total >= o.leaves:
                break
        return total

    def _match(self, o: Order, limit: int | None) -> str | None:
        """Trade `o` against the other side; a reason when matching stopped early."""
        side = self.asks if o.is_buy else self.bids
        while o.qty > o.filled:
            level = side.best()
            if level is None:
                return None
            price = level.price
            if limit is not None and (price > limit if o.is_buy else price < limit):
                return None
            orders = level.orders
            while o.qty > o.filled and level.live:
                m = orders[0]
                if not m.live:
                    orders.popleft()
                    continue
                if m.account_id == o.account_id and o.stp is not Stp.NONE:
                    if o.stp is not Stp.CANCEL_NEWEST:
                        self._remove(m, Reason.SELF_TRADE_PREVENTION)
                    if o.stp is not Stp.CANCEL_OLDEST:
                        return Reason.SELF_TRADE_PREVENTION
                    continue
                want = o.qty - o.filled
                qty = want if want < m.visible else m.visible
                if o.budget is not None:
                    qty = min(qty, o.budget // price)
                    if qty == 0:
                        return Reason.QUOTE_BUDGET_EXHAUSTED
                    o.budget -= qty * price
                self._trade(o, m, level, price, qty)
                if m.visible == 0:
                    orders.popleft()
                    if m.qty > m.filled:  # iceberg: next slice joins the back of the queue
                        m.priority = self._next_priority()
                        m.visible = min(m.display or m.leaves, m.leaves)
                        orders.append(m)
                        level.total += m.visible
                    else:
                        m.live = False
                        level.live -= 1
                        del self.orders[m.order_id]
                        self._dirty[m.order_id] = None
            if not level.live and side.levels.get(price) is level:
                side.drop(level)
        return None

    def _trade(self, taker: Order, maker: Order, level: Level, price: int, qty: int) -> None:
        meta = self.meta
        meta.trade_seq += 1
        trade_id = f"{self.symbol}-{meta.trade_seq}"
        self._touch(maker.is_buy, level)
        maker.filled += qty
        maker.visible -= qty
        level.total -= qty
        taker.filled += qty
        self._dirty[maker.order_id] = maker
        self._dirty[taker.order_id] = taker
        ev = self._events
        taker.seq += 1
        maker.seq += 1
        ev.append(Filled(taker.order_id, taker.account_id, taker.client_order_id, taker.seq,
                         trade_id, taker.is_buy, price, qty, taker.qty - taker.filled, False,
                         maker.account_id))
        ev.append(Filled(maker.order_id, maker.account_id, maker.client_order_id, maker.seq,
                         trade_id, maker.is_buy, price, qty, maker.qty - maker.filled, True,
                         taker.account_id))
        meta.md_seq += 1
        ev.append(TradePrint(trade_id, price, qty, taker.is_buy, meta.md_seq))
        meta.last_price = price

    def _touch(self, is_bid: bool, level: Level) -> None:
        """Remember a level's total before its first change in this command."""
        key = (is_bid, level.price)
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

    def _cancel_taker(self, o: Order, reason: str) -> None:
        """Cancel what is left of an order that is not (yet) in the book."""
        o.live = False
        self.orders.pop(o.order_id, None)
        self._dirty[o.order_id] = None
        self._events.append(Canceled(o.order_id, o.account_id, o.client_order_id, o.next_seq(),
                                     o.leaves, reason))

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

    def _finish(self) -> list[AnyEvent]:
        events = self._events
        if self._touched:
            changes = []
            for (is_bid, price), before in self._touched.items():
                level = (self.bids if is_bid else self.asks).levels.get(price)
                now = level.total if level is not None else 0
                if now != before:
                    changes.append((is_bid, price, now))
            self._touched = {}
            if changes:
                self.meta.md_seq += 1
                events.append(BookDelta(tuple(changes), self.meta.md_seq))
        self._events = []
        return events


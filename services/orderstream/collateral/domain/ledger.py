"""One account's collateral: balances (free and held), holds per order, deposit lots, fees paid.

No I/O. Every decision is a list of collateral events (`Deposited`, `CollateralHeld`,
`FillSettled`, ...), and `evolve` is the only thing that changes the account:
the events are the journal. `journal(event)` gives each event's double entry
over the ledger accounts `external`, `<account>:free`, `<account>:held`,
`clearing` and `house:fees`; its lines sum to zero per asset, so an asset's
total across accounts, clearing and the house moves only by deposits and
withdrawals. Clearing nets to zero once both sides of a trade are settled.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Container
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.decimals import API_MAX, WIRE_LIMIT
from orderstream.common.trading import TERMINAL, ZERO, cost, fee, fee_rate, is_priced

CollateralEvent = (
    r.Deposited | r.Withdrawn | r.WithdrawalRejected | r.CollateralHeld | r.CollateralReleased | r.FillSettled
)

INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
QUOTE_BUDGET_REQUIRED = "QUOTE_BUDGET_REQUIRED"
UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
INVALID_AMOUNT = "INVALID_AMOUNT"
UNKNOWN_ORDER = "UNKNOWN_ORDER"
LINKED_ORDER = "LINKED_ORDER"
BALANCE_LIMIT = "BALANCE_LIMIT"  # the balance would leave the wire decimal (common/decimals.py)


class LedgerError(Exception):
    """A broken ledger invariant: a bug, never a business outcome."""


@dataclass
class Hold:
    """Funds held for one open order, and what collateral knows of the order."""

    asset: str
    amount: Decimal
    symbol: str
    side: r.Side
    order_type: r.OrderType
    price: Decimal | None
    remaining: Decimal
    filled: Decimal = ZERO
    seq: int = 0  # last execution-report sequence applied
    pending_replace: bool = False
    pool: str | None = None  # a member of this pool: its fills draw on the pool, it holds nothing itself

    def to_doc(self) -> list[Any]:
        return [
            self.asset,
            str(self.amount),
            self.symbol,
            self.side.value,
            self.order_type.value,
            None if self.price is None else str(self.price),
            str(self.remaining),
            str(self.filled),
            self.seq,
            self.pending_replace,
            self.pool,
        ]

    @classmethod
    def from_doc(cls, d: list[Any]) -> Hold:
        return cls(
            d[0],
            Decimal(d[1]),
            d[2],
            r.Side(d[3]),
            r.OrderType(d[4]),
            None if d[5] is None else Decimal(d[5]),
            Decimal(d[6]),
            Decimal(d[7]),
            d[8],
            d[9],
            d[10] if len(d) > 10 else None,  # holds stored before pools existed have no pool
        )


OCO, BRACKET, PARENT = "OCO", "BRACKET", "PARENT"


def child_number(order_id: str) -> int | None:
    """n of a child order id `<parent>/<n>` as the router writes it (decimal, no leading zero; at most
    18 digits, so that it parses at once and is stored as a JSON integer every reader takes)."""
    tail = order_id.rpartition("/")[2]
    if tail.isascii() and tail.isdigit() and len(tail) <= 18 and (tail == "0" or tail[0] != "0"):
        return int(tail)
    return None


@dataclass
class NumberRanges:
    """A set of numbers as sorted, disjoint, non-adjacent ranges (lo, hi), both ends included:
    children numbered one after another take one range however many they are."""

    ranges: list[tuple[int, int]] = field(default_factory=list)

    def __contains__(self, n: object) -> bool:
        if not isinstance(n, int):
            return False
        i = bisect_right(self.ranges, n, key=lambda lo_hi: lo_hi[0])  # the ranges from i start after n
        return i > 0 and self.ranges[i - 1][1] >= n

    def count(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def add(self, n: int) -> None:
        rs = self.ranges
        i = bisect_right(rs, n, key=lambda lo_hi: lo_hi[0])
        if i > 0 and rs[i - 1][1] >= n:
            return
        joins_left = i > 0 and rs[i - 1][1] == n - 1
        joins_right = i < len(rs) and rs[i][0] == n + 1
        if joins_left and joins_right:
            rs[i - 1:i + 1] = [(rs[i - 1][0], rs[i][1])]
        elif joins_left:
            rs[i - 1] = (rs[i - 1][0], n)
        elif joins_right:
            rs[i] = (n, rs[i][1])
        else:
            rs.insert(i, (n, n))

    def to_doc(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self.ranges]

    @classmethod
    def from_doc(cls, d: list[list[int]]) -> NumberRanges:
        return cls([(lo, hi) for lo, hi in d])


@dataclass
class Pool:
    """One hold for a parent order whose child orders draw on it, instead of one hold per child.

    What it must hold (`Account.pool_need`) depends on its kind: OCO, the costliest open leg
    (a fill or trigger of one leg cancels the other at the venue, in the same step); BRACKET,
    what the exits can cost for the quantity the entry has filled and they have not, plus the
    reserve; PARENT (TWAP/VWAP, index orders, whose owner plans children within it), its whole
    amount until the owner closes it and every child it created (its count comes with the close)
    has been seen and has ended.

    A PARENT's `members` are its open children, whose holds every step about the pool loads; a
    child that ended leaves them for `finished`, the numbers n of its children `<parent>/<n>` that
    ended, kept in the pool's own document and as small as the runs of those numbers, so that a
    long TWAP's step loads the pool and its open child, not every child it had.
    """

    kind: str
    asset: str
    symbol: str
    amount: Decimal = ZERO
    # its children's order ids (open ones have a hold); a PARENT's open ones only (see `finished`)
    members: list[str] = field(default_factory=list)
    closing: bool = False  # PARENT: its owner is done with it
    entry: str | None = None  # BRACKET: the entry order (it has a hold of its own)
    entry_quantity: Decimal = ZERO
    entry_filled: Decimal = ZERO
    entry_done: bool = False
    exits_filled: Decimal = ZERO
    entry_price: Decimal | None = None  # BRACKET on a sell entry: what its proceeds are at least
    fired: str | None = None  # OCO: the leg that filled or triggered first (the venue canceled the other)
    expected: int = 0  # PARENT: children its owner created (ReleaseParentHold), each seen before it is done
    finished: NumberRanges = field(default_factory=NumberRanges)  # PARENT: its children that ended

    def seen(self) -> int:
        """PARENT: how many children it has seen, open or ended."""
        return len(self.members) + self.finished.count()

    def has_seen(self, order_id: str) -> bool:
        """PARENT: whether its child `order_id` was seen (it is open, or it ended)."""
        return order_id in self.members or child_number(order_id) in self.finished

    def child_ended(self, order_id: str) -> None:
        """PARENT: its child `order_id` ended: from the members to the finished numbers."""
        n = child_number(order_id)
        if n is None:
            return  # an id the router never writes (`<parent>/007`): it stays a member, as it was
        self.members.remove(order_id)
        self.finished.add(n)

    def to_doc(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "asset": self.asset, "symbol": self.symbol, "amount": str(self.amount),
            "members": self.members, "finished": self.finished.to_doc(), "closing": self.closing,
            "entry": self.entry,
            "entry_quantity": str(self.entry_quantity), "entry_filled": str(self.entry_filled),
            "entry_done": self.entry_done, "exits_filled": str(self.exits_filled),
            "entry_price": None if self.entry_price is None else str(self.entry_price),
            "fired": self.fired, "expected": self.expected,
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any], holds: Container[str]) -> Pool:
        """The pool of document `d`; `holds`: the orders whose holds are loaded with it (a PARENT's
        members: app.with_pool), which tell, in a document stored before `finished`, which
        children of `members` ended (they have no hold)."""
        pool = cls(
            d["kind"], d["asset"], d["symbol"], Decimal(d["amount"]), list(d["members"]), d["closing"],
            d["entry"], Decimal(d["entry_quantity"]), Decimal(d["entry_filled"]), d["entry_done"],
            Decimal(d["exits_filled"]), None if d["entry_price"] is None else Decimal(d["entry_price"]),
            d["fired"], d.get("expected", 0),  # pools stored before it: 0, none is awaited
            NumberRanges.from_doc(d.get("finished", [])),
        )
        if "finished" not in d and pool.kind == PARENT:  # stored when members kept every child seen
            for m in [m for m in pool.members if m not in holds]:
                pool.child_ended(m)
        return pool


def pool_of(order_id: str) -> str | None:
    """The parent id of a child order id `<parent>/<n>` (its pool, if it has one)."""
    head, sep, tail = order_id.rpartition("/")
    return head if sep and tail.isdigit() else None


def _cost(inst: r.Instrument, h: Hold, quantity: Decimal) -> Decimal:
    """What `quantity` of the order `h` describes can cost (its cost is bounded: checked when held)."""
    need = cost(inst, h.side, h.order_type, quantity, h.price, None)
    assert need is not None, "a pool member's cost is bounded"
    return need[1]


@dataclass
class Lot:
    lot_id: str
    remaining: Decimal
    source: str
    ts: int


@dataclass
class Account:
    """The ledger of one account."""

    account_id: str
    free: dict[str, Decimal] = field(default_factory=dict)
    held: dict[str, Decimal] = field(default_factory=dict)
    holds: dict[str, Hold] = field(default_factory=dict)
    lots: dict[str, list[Lot]] = field(default_factory=dict)
    fees: dict[str, Decimal] = field(default_factory=dict)
    lot_counter: int = 0
    sequence: int = 0  # of the last balance-changing event: readers keep the newest per asset by it
    pools: dict[str, Pool] = field(default_factory=dict)

    # -- decisions ------------------------------------------------------------

    def deposit(self, cmd: r.Deposit) -> list[CollateralEvent]:
        if cmd.amount <= 0:
            return [self._withdraw_rejected(cmd, INVALID_AMOUNT, "amount must be > 0")]
        if self._free(cmd.asset) + self._held(cmd.asset) + cmd.amount >= WIRE_LIMIT:
            return [self._withdraw_rejected(cmd, BALANCE_LIMIT, f"the {cmd.asset} balance would reach "
                                            f"{WIRE_LIMIT:.0E}, beyond the wire decimal")]
        return self._apply(
            [
                r.Deposited(
                    event_id=f"{cmd.command_id}:0",
                    ts_event=cmd.ts_event,
                    account_id=self.account_id,
                    asset=cmd.asset,
                    command_id=cmd.command_id,
                    amount=cmd.amount,
                    lot_id=f"{self.account_id}:{self.lot_counter + 1}",
                    source=cmd.source,
                    free=self._free(cmd.asset) + cmd.amount,
                    held=self._held(cmd.asset),
                    sequence=self.sequence + 1,
                )
            ]
        )

    def withdraw(self, cmd: r.Withdraw) -> list[CollateralEvent]:
        if cmd.amount <= 0:
            return [self._withdraw_rejected(cmd, INVALID_AMOUNT, "amount must be > 0")]
        if cmd.amount > self._free(cmd.asset):
            return [
                self._withdraw_rejected(
                    cmd,
                    INSUFFICIENT_FUNDS,
                    f"free {cmd.asset} is {self._free(cmd.asset)}, asked {cmd.amount}",
                )
            ]
        return self._apply(
            [
                r.Withdrawn(
                    event_id=f"{cmd.command_id}:0",
                    ts_event=cmd.ts_event,
                    account_id=self.account_id,
                    asset=cmd.asset,
                    command_id=cmd.command_id,
                    amount=cmd.amount,
                    destination=cmd.destination,
                    free=self._free(cmd.asset) - cmd.amount,
                    held=self._held(cmd.asset),
                    sequence=self.sequence + 1,
                )
            ]
        )

    def hold_orders(
        self, orders: list[r.SubmitOrder], instruments: dict[str, r.Instrument]
    ) -> tuple[list[CollateralEvent], tuple[str, str] | None]:
        """Hold what each order can cost, all or none; (events, None) or ([], (reason, message))."""
        needs: list[tuple[r.SubmitOrder, r.Instrument, str, Decimal]] = []
        totals: dict[str, Decimal] = {}
        for o in orders:
            inst = instruments.get(o.symbol)
            if inst is None:
                return [], (UNKNOWN_SYMBOL, f"unknown symbol {o.symbol}")
            need = cost(inst, o.side, o.order_type, o.quantity, o.price, o.quote_budget)
            if need is None:
                return [], (QUOTE_BUDGET_REQUIRED, f"a {o.order_type.value} buy needs quote_budget")
            asset, amount = need
            if not self._settles_inside_wire(inst, o):
                return [], (BALANCE_LIMIT, f"settling order {o.order_id} could take a balance beyond "
                                           f"{WIRE_LIMIT:.0E}, outside the wire decimal")
            needs.append((o, inst, asset, amount))
            totals[asset] = totals.get(asset, ZERO) + amount
        for asset, amount in totals.items():
            if amount > self._free(asset):
                return [], (INSUFFICIENT_FUNDS, f"needs {amount} {asset}, free {self._free(asset)}")
        events: list[CollateralEvent] = []
        for n, (o, _, asset, amount) in enumerate(needs):
            self.holds[o.order_id] = Hold(asset, ZERO, o.symbol, o.side, o.order_type, o.price, o.quantity)
            events += self._apply(
                [self._held_event(f"{o.command_id}:{n}", o.ts_event, o.order_id, asset, amount)]
            )
        return events, None

    def hold_list(
        self, cmd: r.SubmitOrderList, legs: list[r.SubmitOrder], inst: r.Instrument | None
    ) -> tuple[list[CollateralEvent], tuple[str, str] | None]:
        """Hold what an order list can cost at most, all or none: an OCO, its costliest leg (one
        pool for both legs); a bracket, its entry (a hold of its own) and, in a pool for the exits,
        the part of the exits' cost that the entry's proceeds do not cover. `legs`: the orders
        placed at once (an OCO's two legs, a bracket's entry)."""
        if inst is None:
            return [], (UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol}")
        for o in legs:
            if not self._settles_inside_wire(inst, o):
                return [], (BALANCE_LIMIT, f"settling order {o.order_id} could take a balance beyond "
                                           f"{WIRE_LIMIT:.0E}, outside the wire decimal")
        g = cmd.order_id
        if cmd.contingency == r.ContingencyType.OCO:
            needs = [cost(inst, o.side, o.order_type, o.quantity, o.price, None) for o in legs]
            bounded = [n for n in needs if n is not None]
            if len(bounded) < len(needs):
                return [], (QUOTE_BUDGET_REQUIRED, "an OCO buy leg needs a limit price to be held for")
            asset, amount = bounded[0][0], max(n[1] for n in bounded)
            if amount > self._free(asset):
                return [], (INSUFFICIENT_FUNDS, f"needs {amount} {asset}, free {self._free(asset)}")
            self.pools[g] = Pool(OCO, asset, cmd.symbol, members=[o.order_id for o in legs])
            for o in legs:
                self.holds[o.order_id] = Hold(asset, ZERO, o.symbol, o.side, o.order_type, o.price,
                                              o.quantity, pool=g)
            held = self._held_event(f"{cmd.command_id}:0", cmd.ts_event, g, asset, amount)
            return self._apply([held]), None
        entry = legs[0]
        need = cost(inst, entry.side, entry.order_type, entry.quantity, entry.price, entry.quote_budget)
        if need is None:
            return [], (QUOTE_BUDGET_REQUIRED, f"a {entry.order_type.value} buy entry needs quote_budget")
        exit_asset = inst.base_asset if entry.side == r.Side.BUY else inst.quote_asset
        pool = Pool(BRACKET, exit_asset, cmd.symbol, members=[f"{g}/1", f"{g}/2"], entry=entry.order_id,
                    entry_quantity=entry.quantity, entry_price=entry.price)
        exits = [Hold(exit_asset, ZERO, cmd.symbol, x.side, x.order_type, x.price, ZERO, pool=g)
                 for x in cmd.orders[1:]]
        if any(cost(inst, x.side, x.order_type, entry.quantity, x.price, None) is None for x in exits):
            return [], (QUOTE_BUDGET_REQUIRED, "a bracket's buy exits need limit prices to be held for "
                                               "(a sell entry's stop-loss must be STOP_LIMIT)")
        reserve = self._reserve(pool, exits, inst, entry.quantity)
        totals = {need[0]: need[1]}
        totals[exit_asset] = totals.get(exit_asset, ZERO) + reserve
        for asset, amount in totals.items():
            if amount > self._free(asset):
                return [], (INSUFFICIENT_FUNDS, f"needs {amount} {asset}, free {self._free(asset)}")
        self.pools[g] = pool
        for member, h in zip(pool.members, exits, strict=True):
            self.holds[member] = h
        self.holds[entry.order_id] = Hold(need[0], ZERO, entry.symbol, entry.side, entry.order_type,
                                          entry.price, entry.quantity)
        events = self._apply(
            [self._held_event(f"{cmd.command_id}:0", cmd.ts_event, entry.order_id, need[0], need[1])]
        )
        if reserve > 0:
            events += self._apply(
                [self._held_event(f"{cmd.command_id}:1", cmd.ts_event, g, exit_asset, reserve)]
            )
        return events, None

    def open_pool(
        self, pool_id: str, event_id: str, ts: int, symbol: str, asset: str, amount: Decimal
    ) -> tuple[list[CollateralEvent], tuple[str, str] | None]:
        """Hold `amount` for a parent order (TWAP/VWAP, index order) whose owner plans its children
        within it; its children's fills draw on it until `release_parent`."""
        if amount > self._free(asset):
            return [], (INSUFFICIENT_FUNDS, f"needs {amount} {asset}, free {self._free(asset)}")
        self.pools[pool_id] = Pool(PARENT, asset, symbol)
        if amount <= 0:
            return [], None
        return self._apply([self._held_event(event_id, ts, pool_id, asset, amount)]), None

    def hold_algo(
        self, cmd: r.SubmitAlgoOrder, inst: r.Instrument | None
    ) -> tuple[list[CollateralEvent], tuple[str, str] | None]:
        """A TWAP/VWAP parent's pool: what all its children can cost together (the router keeps them
        within the parent's quantity and limit price): a sell its quantity of the base asset, a buy
        quantity x limit price plus the higher fee."""
        if inst is None:
            return [], (UNKNOWN_SYMBOL, f"unknown symbol {cmd.symbol}")
        order_type = r.OrderType.MARKET if cmd.limit_price is None else r.OrderType.LIMIT
        need = cost(inst, cmd.side, order_type, cmd.quantity, cmd.limit_price, None)
        if need is None:
            return [], (QUOTE_BUDGET_REQUIRED, "a TWAP/VWAP buy needs a limit_price")
        return self.open_pool(cmd.order_id, f"{cmd.command_id}:0", cmd.ts_event, cmd.symbol, *need)

    def resize_pool(
        self, pool_id: str, delta: Decimal, event_id: str, ts: int
    ) -> tuple[list[CollateralEvent], tuple[str, str] | None]:
        """Hold `delta` more for a parent order, or release `-delta` of what it holds (its owner
        guarantees its open children do not need it)."""
        pool = self.pools.get(pool_id)
        if pool is None or pool.kind != PARENT or pool.closing:
            return [], (UNKNOWN_ORDER, f"no open parent order {pool_id}")
        if delta > 0:
            if delta > self._free(pool.asset):
                free = self._free(pool.asset)
                return [], (INSUFFICIENT_FUNDS, f"needs {delta} {pool.asset} more, free {free}")
            return self._apply([self._held_event(event_id, ts, pool_id, pool.asset, delta)]), None
        amount = min(-delta, pool.amount)
        if amount <= 0:
            return [], None
        return self._apply([self._released(event_id, ts, pool_id, pool.asset, amount, "RESIZED")]), None

    def release_parent(self, cmd: r.ReleaseParentHold) -> list[CollateralEvent]:
        """The parent's owner is done with it: release what it holds once no child is open."""
        pool = self.pools.get(cmd.order_id)
        if pool is None or pool.kind != PARENT:
            return []
        pool.closing, pool.expected = True, cmd.children
        return self._rebalance(cmd.order_id, None, f"{cmd.command_id}:0", cmd.ts_event, cmd.reason)

    # -- pools --------------------------------------------------------------------

    def pool_need(self, pool: Pool, inst: r.Instrument | None) -> Decimal:
        """What a pool must hold now (see `Pool`)."""
        members = [self.holds[m] for m in pool.members if m in self.holds]
        if pool.kind == PARENT:
            return ZERO if self._pool_done(pool) else pool.amount
        assert inst is not None, f"a {pool.kind} pool needs its instrument"
        if pool.kind == OCO:
            live = [self.holds[m] for m in pool.members if m in self.holds and pool.fired in (None, m)]
            return max((_cost(inst, h, h.remaining) for h in live), default=ZERO)
        open_quantity = pool.entry_filled - pool.exits_filled
        exits = ZERO
        if open_quantity > 0:
            exits = max((_cost(inst, h, open_quantity) for h in members), default=ZERO)
        left = ZERO if pool.entry_done else pool.entry_quantity - pool.entry_filled
        return exits + self._reserve(pool, members, inst, left)

    def _reserve(self, pool: Pool, exits: list[Hold], inst: r.Instrument, quantity: Decimal) -> Decimal:
        """What the exits of `quantity` of the entry can cost beyond its least proceeds: nothing for a
        buy entry (its exits sell the base it buys), for a sell entry the buy-back above its price."""
        if quantity <= 0 or pool.asset == inst.base_asset or not exits:
            return ZERO
        price = pool.entry_price
        notional = ZERO if price is None else price * quantity
        proceeds = notional - fee(notional, max(inst.maker_fee, inst.taker_fee))
        return max(ZERO, max(_cost(inst, h, quantity) for h in exits) - proceeds)

    def _pool_done(self, pool: Pool) -> bool:
        open_members = any(m in self.holds for m in pool.members)
        if pool.kind == OCO:
            return not open_members
        if pool.kind == BRACKET:
            return pool.entry_done and (not open_members or pool.entry_filled == 0)
        # a PARENT: closed, and every child its owner created seen (a child's first report can come
        # after the ReleaseParentHold) and ended
        return pool.closing and not open_members and pool.seen() >= pool.expected

    def _rebalance(
        self, pool_id: str, inst: r.Instrument | None, event_id: str, ts: int, reason: str
    ) -> list[CollateralEvent]:
        """Bring a pool to what it must hold now: release the excess, or hold the growth of a
        bracket's exits out of the entry's proceeds just settled; forget it once it is done."""
        pool = self.pools[pool_id]
        need = self.pool_need(pool, inst)
        events: list[CollateralEvent] = []
        if need < pool.amount:
            events += self._apply(
                [self._released(f"{event_id}:p", ts, pool_id, pool.asset, pool.amount - need, reason)]
            )
        elif need > pool.amount:
            extra = need - pool.amount
            if extra > self._free(pool.asset):
                free = self._free(pool.asset)
                raise LedgerError(f"pool {pool_id} needs {extra} {pool.asset} more, free {free}")
            events += self._apply([self._held_event(f"{event_id}:p", ts, pool_id, pool.asset, extra)])
        if self._pool_done(pool):
            assert pool.amount == 0, f"pool {pool_id} done holding {pool.amount}"
            for m in pool.members:
                self.holds.pop(m, None)
            del self.pools[pool_id]
        return events

    def _settles_inside_wire(self, inst: r.Instrument, o: r.SubmitOrder) -> bool:
        """Whether every fill of `o` leaves what it pays in, and what it costs, inside the wire decimal:
        a buy brings its quantity of the base asset, a sell at most its quantity at its price (or at
        its quantity, for an unpriced sell, times the largest price a client may send)."""
        if o.side == r.Side.BUY:
            gets, amount = inst.base_asset, o.quantity
        else:
            gets, amount = inst.quote_asset, o.quantity * (o.price if o.price is not None else API_MAX)
        return self._free(gets) + self._held(gets) + amount < WIRE_LIMIT

    def hold_replace(
        self, cmd: r.ReplaceOrder, instrument: r.Instrument | None
    ) -> tuple[list[CollateralEvent], tuple[str, str] | None]:
        """Hold more when a replace can cost more than the hold; release waits for the report."""
        hold = self.holds.get(cmd.order_id)
        if hold is not None and (hold.pool is not None or cmd.order_id in self.pools or any(
                p.entry == cmd.order_id for p in self.pools.values())):
            return [], (LINKED_ORDER, "an order of a list or a parent order cannot be replaced: cancel it "
                                      "and place it again")
        if hold is None or instrument is None or not is_priced(hold.order_type, hold.price):
            return [], None  # not ours to judge: the venue answers (unknown order, wrong type)
        quantity = cmd.quantity - hold.filled if cmd.quantity is not None else hold.remaining
        price = cmd.price if cmd.price is not None else hold.price
        need = cost(instrument, hold.side, hold.order_type, max(quantity, ZERO), price, None)
        assert need is not None
        extra = need[1] - hold.amount
        hold.pending_replace = True
        if extra <= 0:
            return [], None
        if extra > self._free(hold.asset):
            hold.pending_replace = False
            return [], (
                INSUFFICIENT_FUNDS,
                f"the replace needs {extra} {hold.asset} more, free {self._free(hold.asset)}",
            )
        return self._apply(
            [self._held_event(f"{cmd.command_id}:0", cmd.ts_event, cmd.order_id, hold.asset, extra)]
        ), None

    def on_report(self, rep: r.ExecutionReport, instrument: r.Instrument | None) -> list[CollateralEvent]:
        """Settle a fill and release what the order can no longer cost."""
        pool_id = pool_of(rep.order_id)
        pool = self.pools.get(pool_id) if pool_id is not None else None
        hold = self.holds.get(rep.order_id)
        if hold is None and pool is not None and pool.kind == PARENT and not pool.has_seen(rep.order_id):
            # a child the parent's owner placed: it draws on the pool from its first report on
            pool.members.append(rep.order_id)
            hold = self.holds[rep.order_id] = Hold(pool.asset, ZERO, rep.symbol, rep.side, rep.order_type,
                                                   rep.price, rep.quantity, pool=pool_id)
        # A refused replace is reported with the order's sequence number unchanged: it still
        # ends the pending replace, so what was held for it is released (once: it clears the flag).
        refused = (hold is not None and hold.pending_replace and rep.reason is not None
                   and rep.status not in TERMINAL and rep.sequence == hold.seq)
        if hold is None or (rep.sequence <= hold.seq and not refused):
            return []  # not funded here, or already applied
        hold.seq = rep.sequence
        events: list[CollateralEvent] = []
        if (
            rep.trade_id is not None
            and rep.last_fill_quantity is not None
            and rep.last_fill_price is not None
        ):
            if instrument is None:
                raise LedgerError(f"a fill on {rep.symbol} with no instrument to settle it")
            events += self._settle(rep, hold, instrument)
        hold.remaining, hold.filled = rep.remaining_quantity, rep.filled_quantity
        if rep.status == r.OrderStatus.REPLACED or rep.reason is not None:
            hold.pending_replace = False
        if rep.status == r.OrderStatus.REPLACED:
            hold.price = rep.price
        keep = hold.amount
        if rep.status in TERMINAL:
            keep = ZERO
        elif not hold.pending_replace and is_priced(hold.order_type, hold.price) and instrument is not None:
            need = cost(instrument, hold.side, hold.order_type, hold.remaining, hold.price, None)
            assert need is not None
            keep = min(hold.amount, need[1])
        if keep < hold.amount:
            reason = rep.status.value if rep.status in TERMINAL else "EXCESS"
            events += self._apply(
                [self._released(f"{rep.event_id}:r", rep.ts_event, rep.order_id, hold.asset,
                                hold.amount - keep, reason)]
            )
        if rep.status in TERMINAL:
            del self.holds[rep.order_id]
            if pool is not None and pool.kind == PARENT and hold.pool == pool_id:
                pool.child_ended(rep.order_id)
        if pool is not None and pool_id is not None and (hold.pool == pool_id or pool.entry == rep.order_id):
            if pool.entry == rep.order_id:
                pool.entry_filled, pool.entry_done = rep.filled_quantity, rep.status in TERMINAL
            elif pool.kind == BRACKET and rep.last_fill_quantity is not None and rep.trade_id is not None:
                pool.exits_filled += rep.last_fill_quantity
            elif pool.kind == OCO and pool.fired is None and (
                    rep.trade_id is not None or rep.status == r.OrderStatus.TRIGGERED):
                pool.fired = rep.order_id
            events += self._rebalance(pool_id, instrument, rep.event_id, rep.ts_event,
                                      rep.status.value if rep.status in TERMINAL else "EXCESS")
        return events

    def _settle(self, rep: r.ExecutionReport, hold: Hold, inst: r.Instrument) -> list[CollateralEvent]:
        assert rep.last_fill_quantity is not None and rep.last_fill_price is not None and rep.trade_id
        qty, price = rep.last_fill_quantity, rep.last_fill_price
        notional = price * qty
        paid = fee(notional, fee_rate(inst, rep.last_liquidity))
        base, quote = inst.base_asset, inst.quote_asset
        if hold.side == r.Side.BUY:
            legs = [(quote, -(notional + paid), paid), (base, qty, ZERO)]
        else:
            legs = [(base, -qty, ZERO), (quote, notional - paid, paid)]
        events: list[CollateralEvent] = []
        for n, (asset, delta, leg_fee) in enumerate(legs):
            free, held = self._free(asset), self._held(asset)
            if delta < 0:
                held_for = self.pools[hold.pool].amount if hold.pool is not None else hold.amount
                if -delta > held_for:
                    raise LedgerError(f"fill {rep.trade_id} costs {-delta} {asset}, hold is {held_for}")
                held += delta
            else:
                free += delta
            events += self._apply(
                [
                    r.FillSettled(
                        event_id=f"{rep.event_id}:s{n}",
                        ts_event=rep.ts_event,
                        account_id=self.account_id,
                        asset=asset,
                        order_id=rep.order_id,
                        trade_id=rep.trade_id,
                        delta=delta,
                        fee=leg_fee,
                        free=free,
                        held=held,
                        sequence=self.sequence + 1,
                    )
                ]
            )
        return events

    # -- evolution --------------------------------------------------------------

    def _apply(self, events: list[CollateralEvent]) -> list[CollateralEvent]:
        for e in events:
            self.evolve(e)
        return events

    def evolve(self, e: CollateralEvent) -> None:
        """Apply one event; the only mutation of balances, holds and lots."""
        if isinstance(e, r.WithdrawalRejected):
            return  # changes nothing
        if e.sequence != self.sequence + 1:
            raise LedgerError(f"{self.account_id}: event {e.event_id} has sequence {e.sequence}, "
                              f"expected {self.sequence + 1}")
        self.sequence = e.sequence
        if isinstance(e, r.Deposited):
            self._add(self.free, e.asset, e.amount)
            self.lot_counter += 1
            self.lots.setdefault(e.asset, []).append(Lot(e.lot_id, e.amount, e.source, e.ts_event))
        elif isinstance(e, r.Withdrawn):
            self._add(self.free, e.asset, -e.amount)
            self._consume(e.asset, e.amount)
        elif isinstance(e, r.CollateralHeld):
            self._add(self.free, e.asset, -e.amount)
            self._add(self.held, e.asset, e.amount)
            self._holder(e.order_id).amount += e.amount
        elif isinstance(e, r.CollateralReleased):
            self._add(self.held, e.asset, -e.amount)
            self._add(self.free, e.asset, e.amount)
            self._holder(e.order_id).amount -= e.amount
        elif isinstance(e, r.FillSettled):
            self._add(self.fees, e.asset, e.fee)
            if e.delta < 0:
                self._add(self.held, e.asset, e.delta)
                self._holder(e.order_id).amount += e.delta
                self._consume(e.asset, -e.delta)
            else:
                self._add(self.free, e.asset, e.delta)
                lots = self.lots.setdefault(e.asset, [])
                if lots and lots[-1].source.startswith("trade"):
                    # Proceeds of consecutive trades share one lot ("trades", from the first one's
                    # time), so an active account's lots stay as few as its deposits, not its fills.
                    lots[-1].remaining += e.delta
                    lots[-1].source = "trades"
                else:
                    self.lot_counter += 1
                    lots.append(
                        Lot(
                            f"{self.account_id}:{self.lot_counter}",
                            e.delta,
                            f"trade:{e.trade_id}",
                            e.ts_event,
                        )
                    )
        for asset in (getattr(e, "asset", None),):
            if asset is not None and (self._free(asset) < 0 or self._held(asset) < 0):
                raise LedgerError(f"{self.account_id} {asset} went negative after {e.event_id}")

    def _consume(self, asset: str, amount: Decimal) -> None:
        """Take `amount` out of the asset's lots, oldest first."""
        lots = self.lots.get(asset, [])
        while amount > 0 and lots:
            lot = lots[0]
            used = min(lot.remaining, amount)
            lot.remaining -= used
            amount -= used
            if lot.remaining == 0:
                lots.pop(0)

    # -- helpers ------------------------------------------------------------------

    def _holder(self, order_id: str) -> Hold | Pool:
        """Where the funds of `order_id` are held: its own hold, its pool, or the pool it is."""
        pool = self.pools.get(order_id)
        if pool is not None:
            return pool
        hold = self.holds[order_id]
        return self.pools[hold.pool] if hold.pool is not None else hold

    def _released(self, event_id: str, ts: int, order_id: str, asset: str, amount: Decimal,
                  reason: str) -> r.CollateralReleased:
        return r.CollateralReleased(**self._moved(event_id, ts, order_id, asset, -amount), reason=reason)

    def _free(self, asset: str) -> Decimal:
        return self.free.get(asset, ZERO)

    def _held(self, asset: str) -> Decimal:
        return self.held.get(asset, ZERO)

    @staticmethod
    def _add(where: dict[str, Decimal], asset: str, amount: Decimal) -> None:
        where[asset] = where.get(asset, ZERO) + amount

    def _held_event(
        self, event_id: str, ts: int, order_id: str, asset: str, amount: Decimal
    ) -> r.CollateralHeld:
        return r.CollateralHeld(**self._moved(event_id, ts, order_id, asset, amount))

    def _moved(self, event_id: str, ts: int, order_id: str, asset: str, to_held: Decimal) -> dict[str, Any]:
        """The fields of a CollateralHeld (`to_held` > 0) or CollateralReleased (< 0)."""
        return {
            "event_id": event_id,
            "ts_event": ts,
            "account_id": self.account_id,
            "asset": asset,
            "order_id": order_id,
            "amount": abs(to_held),
            "free": self._free(asset) - to_held,
            "held": self._held(asset) + to_held,
            "sequence": self.sequence + 1,
        }

    def _withdraw_rejected(
        self, cmd: r.Deposit | r.Withdraw, reason: str, message: str
    ) -> r.WithdrawalRejected:
        return r.WithdrawalRejected(
            event_id=f"{cmd.command_id}:0",
            ts_event=cmd.ts_event,
            account_id=self.account_id,
            asset=cmd.asset,
            command_id=cmd.command_id,
            amount=cmd.amount,
            reason=reason,
            message=message,
        )

    # -- persistence ----------------------------------------------------------------

    def to_doc(self) -> dict[str, Any]:
        return {
            "free": {a: str(v) for a, v in self.free.items()},
            "held": {a: str(v) for a, v in self.held.items()},
            "holds": {**{o: h.to_doc() for o, h in self.holds.items()},
                      **{p: pool.to_doc() for p, pool in self.pools.items()}},
            "lots": {
                a: [[x.lot_id, str(x.remaining), x.source, x.ts] for x in lots]
                for a, lots in self.lots.items()
                if lots
            },
            "fees": {a: str(v) for a, v in self.fees.items()},
            "lot_counter": self.lot_counter,
            "sequence": self.sequence,
        }

    @classmethod
    def from_doc(cls, account_id: str, d: dict[str, Any] | None) -> Account:
        if not d:
            return cls(account_id)
        holds = {o: Hold.from_doc(h) for o, h in d["holds"].items() if isinstance(h, list)}
        return cls(
            account_id,
            {a: Decimal(v) for a, v in d["free"].items()},
            {a: Decimal(v) for a, v in d["held"].items()},
            holds,
            {a: [Lot(x[0], Decimal(x[1]), x[2], x[3]) for x in lots] for a, lots in d["lots"].items()},
            {a: Decimal(v) for a, v in d["fees"].items()},
            d["lot_counter"],
            d.get("sequence", 0),  # accounts stored before events carried a sequence start at 0
            {p: Pool.from_doc(h, holds) for p, h in d["holds"].items() if isinstance(h, dict)},
        )


def journal(account_id: str, e: CollateralEvent) -> list[tuple[str, str, Decimal]]:
    """The double entry of one event: (ledger account, asset, amount) lines summing to zero per asset."""
    free, held = f"{account_id}:free", f"{account_id}:held"
    if isinstance(e, r.Deposited):
        return [("external", e.asset, -e.amount), (free, e.asset, e.amount)]
    if isinstance(e, r.Withdrawn):
        return [(free, e.asset, -e.amount), ("external", e.asset, e.amount)]
    if isinstance(e, r.CollateralHeld):
        return [(free, e.asset, -e.amount), (held, e.asset, e.amount)]
    if isinstance(e, r.CollateralReleased):
        return [(held, e.asset, -e.amount), (free, e.asset, e.amount)]
    if isinstance(e, r.FillSettled):
        if e.delta < 0:
            return [
                (held, e.asset, e.delta),
                ("clearing", e.asset, -e.delta - e.fee),
                ("house:fees", e.asset, e.fee),
            ]
        return [
            (free, e.asset, e.delta),
            ("clearing", e.asset, -e.delta - e.fee),
            ("house:fees", e.asset, e.fee),
        ]
    return []

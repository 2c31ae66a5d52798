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
        )


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
        hold = self.holds.get(rep.order_id)
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
                [
                    r.CollateralReleased(
                        event_id=f"{rep.event_id}:r",
                        ts_event=rep.ts_event,
                        account_id=self.account_id,
                        asset=hold.asset,
                        order_id=rep.order_id,
                        amount=hold.amount - keep,
                        reason=reason,
                        free=self._free(hold.asset) + hold.amount - keep,
                        held=self._held(hold.asset) - hold.amount + keep,
                        sequence=self.sequence + 1,
                    )
                ]
            )
        if rep.status in TERMINAL:
            del self.holds[rep.order_id]
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
                if -delta > hold.amount:
                    raise LedgerError(f"fill {rep.trade_id} costs {-delta} {asset}, hold is {hold.amount}")
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
            self.holds[e.order_id].amount += e.amount
        elif isinstance(e, r.CollateralReleased):
            self._add(self.held, e.asset, -e.amount)
            self._add(self.free, e.asset, e.amount)
            self.holds[e.order_id].amount -= e.amount
        elif isinstance(e, r.FillSettled):
            self._add(self.fees, e.asset, e.fee)
            if e.delta < 0:
                self._add(self.held, e.asset, e.delta)
                self.holds[e.order_id].amount += e.delta
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
        return r.CollateralHeld(
            event_id=event_id,
            ts_event=ts,
            account_id=self.account_id,
            asset=asset,
            order_id=order_id,
            amount=amount,
            free=self._free(asset) - amount,
            held=self._held(asset) + amount,
            sequence=self.sequence + 1,
        )

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
            "holds": {o: h.to_doc() for o, h in self.holds.items()},
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
        return cls(
            account_id,
            {a: Decimal(v) for a, v in d["free"].items()},
            {a: Decimal(v) for a, v in d["held"].items()},
            {o: Hold.from_doc(h) for o, h in d["holds"].items()},
            {a: [Lot(x[0], Decimal(x[1]), x[2], x[3]) for x in lots] for a, lots in d["lots"].items()},
            {a: Decimal(v) for a, v in d["fees"].items()},
            d["lot_counter"],
            d.get("sequence", 0),  # accounts stored before events carried a sequence start at 0
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

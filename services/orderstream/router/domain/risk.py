"""Pre-trade risk: limits per account (with global defaults) against an account's exposure. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.trading import TERMINAL, ZERO, Position

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class Limits:
    max_order_quantity: Decimal
    max_order_notional: Decimal
    max_open_orders: int
    max_position: Decimal
    max_daily_loss: Decimal


@dataclass
class Exposure:
    """What an account has at risk: open orders, positions, today's realized P&L net of fees."""

    # order_id -> [symbol, side, leaves, seq]; the service loads only the entries a step concerns,
    # so the rules read the totals below, which cover every open order
    open: dict[str, list[Any]] = field(default_factory=dict)
    positions: dict[str, Position] = field(default_factory=dict)
    day: int = 0
    day_pnl: Decimal = ZERO
    open_count: int = 0
    pending: dict[str, Decimal] = field(default_factory=dict)  # "<symbol>|<side>" -> leaves of open orders

    def check(
        self,
        o: r.SubmitOrder,
        limits: Limits,
        instrument: r.Instrument | None,
        mark: Decimal | None,
        killed: str | None,
    ) -> tuple[str, str] | None:
        """(reason, message) when `o` breaks a rule, else None."""
        if killed is not None:
            return "KILL_SWITCH", f"trading is stopped for {killed}"
        if instrument is None:
            return "UNKNOWN_SYMBOL", f"unknown symbol {o.symbol}"
        if not instrument.enabled:
            return "SYMBOL_DISABLED", f"{o.symbol} is not trading"
        if o.quantity > limits.max_order_quantity:
            return "MAX_ORDER_QUANTITY", f"quantity {o.quantity} above the limit {limits.max_order_quantity}"
        price = o.price if o.price is not None else o.stop_price if o.stop_price is not None else mark
        notional = (
            o.quote_budget
            if o.quote_budget is not None
            else (price * o.quantity if price is not None else None)
        )
        if notional is not None and notional > limits.max_order_notional:
            return "MAX_ORDER_NOTIONAL", f"notional {notional} above the limit {limits.max_order_notional}"
        if self.open_count >= limits.max_open_orders:
            return "MAX_OPEN_ORDERS", f"{self.open_count} open orders, the limit is {limits.max_open_orders}"
        sign = 1 if o.side == r.Side.BUY else -1
        pending = self.pending.get(f"{o.symbol}|{o.side.value}", ZERO)
        held = self.positions.get(o.symbol, Position()).quantity
        worst = abs(held + sign * (pending + o.quantity))
        if worst > limits.max_position:
            return (
                "MAX_POSITION",
                f"the position in {o.symbol} could reach {worst}, the limit is {limits.max_position}",
            )
        if self.day == o.ts_event // DAY_NS and -self.day_pnl >= limits.max_daily_loss:
            return (
                "DAILY_LOSS_LIMIT",
                f"today's realized loss {-self.day_pnl} reached {limits.max_daily_loss}",
            )
        return None

    def opened(self, o: r.SubmitOrder) -> None:
        if o.order_id in self.open:  # the same order again: counted once
            self.unopened(o.order_id)
        self.open[o.order_id] = [o.symbol, o.side.value, str(o.quantity), 0]
        self.open_count += 1
        self._pend(o.symbol, o.side.value, o.quantity)

    def adopt(self, rep: r.ExecutionReport) -> None:
        """Count an order another service placed for the account (a bracket's exit) from its first
        report on (the report itself then applies as to any open order)."""
        self.open[rep.order_id] = [rep.symbol, rep.side.value, "0", 0]
        self.open_count += 1

    def unopened(self, order_id: str) -> None:
        """Take back an order `opened` in this step (it could not be placed)."""
        sym, side, leaves, _ = self.open.pop(order_id)
        self.open_count -= 1
        self._pend(sym, side, -Decimal(leaves))

    def on_report(self, rep: r.ExecutionReport) -> bool:
        """Track one execution report; False when it was already seen."""
        entry = self.open.get(rep.order_id)
        if entry is None or rep.sequence <= entry[3]:
            return False
        self._pend(entry[0], entry[1], rep.remaining_quantity - Decimal(entry[2]))
        entry[2], entry[3] = str(rep.remaining_quantity), rep.sequence
        if rep.last_fill_quantity is not None and rep.last_fill_price is not None:
            fill_fee = ZERO
            position = self.positions.setdefault(rep.symbol, Position())
            realized = position.fill(rep.side, rep.last_fill_quantity, rep.last_fill_price, fill_fee)
            day = rep.ts_event // DAY_NS
            if day != self.day:
                self.day, self.day_pnl = day, ZERO
            self.day_pnl += realized
        if rep.status in TERMINAL:
            del self.open[rep.order_id]
            self.open_count -= 1
            self._pend(entry[0], entry[1], -rep.remaining_quantity)
        return True

    def _pend(self, symbol: str, side: str, delta: Decimal) -> None:
        key = f"{symbol}|{side}"
        total = self.pending.get(key, ZERO) + delta
        if total:
            self.pending[key] = total
        else:
            self.pending.pop(key, None)

    def to_doc(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "positions": {s: p.to_doc() for s, p in self.positions.items()},
            "day": self.day,
            "day_pnl": str(self.day_pnl),
            "open_count": self.open_count,
            "pending": {k: str(v) for k, v in self.pending.items()},
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any] | None) -> Exposure:
        if not d:
            return cls()
        x = cls(
            d["open"],
            {s: Position.from_doc(p) for s, p in d["positions"].items()},
            d["day"],
            Decimal(d["day_pnl"]),
        )
        if "open_count" in d:
            x.open_count = d["open_count"]
            x.pending = {k: Decimal(v) for k, v in d["pending"].items()}
        else:  # stored before the totals: every open order is in the document
            x.open_count = len(x.open)
            for sym, side, leaves, _ in x.open.values():
                x._pend(sym, side, Decimal(leaves))
        return x

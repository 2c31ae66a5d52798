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

    open: dict[str, list[Any]] = field(default_factory=dict)  # order_id -> [symbol, side, leaves, seq]
    positions: dict[str, Position] = field(default_factory=dict)
    day: int = 0
    day_pnl: Decimal = ZERO

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
        if len(self.open) >= limits.max_open_orders:
            return "MAX_OPEN_ORDERS", f"{len(self.open)} open orders, the limit is {limits.max_open_orders}"
        sign = 1 if o.side == r.Side.BUY else -1
        pending = sum(
            (
                Decimal(leaves)
                for sym, side, leaves, _ in self.open.values()
                if sym == o.symbol and side == o.side.value
            ),
            ZERO,
        )
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
        self.open[o.order_id] = [o.symbol, o.side.value, str(o.quantity), 0]

    def on_report(self, rep: r.ExecutionReport) -> bool:
        """Track one execution report; False when it was already seen."""
        entry = self.open.get(rep.order_id)
        if entry is None or rep.sequence <= entry[3]:
            return False
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
        return True

    def to_doc(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "positions": {s: p.to_doc() for s, p in self.positions.items()},
            "day": self.day,
            "day_pnl": str(self.day_pnl),
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any] | None) -> Exposure:
        if not d:
            return cls()
        return cls(
            d["open"],
            {s: Position.from_doc(p) for s, p in d["positions"].items()},
            d["day"],
            Decimal(d["day_pnl"]),
        )

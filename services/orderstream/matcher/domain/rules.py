"""Instrument rules: exact conversion between wire decimals and the core's ticks and lots."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orderstream.common import records as r
from orderstream.matcher.domain.model import Kind, NewOrder, Reason, Stp, Tif

KINDS = {r.OrderType.LIMIT: Kind.LIMIT, r.OrderType.MARKET: Kind.MARKET,
         r.OrderType.STOP_MARKET: Kind.STOP_MARKET, r.OrderType.STOP_LIMIT: Kind.STOP_LIMIT,
         r.OrderType.TAKE_PROFIT_MARKET: Kind.TAKE_PROFIT_MARKET,
         r.OrderType.TAKE_PROFIT_LIMIT: Kind.TAKE_PROFIT_LIMIT, r.OrderType.TRAILING_STOP: Kind.TRAILING_STOP}
ORDER_TYPES = {v: k for k, v in KINDS.items()}
TIFS = {r.TimeInForce.GTC: Tif.GTC, r.TimeInForce.GTD: Tif.GTD, r.TimeInForce.IOC: Tif.IOC,
        r.TimeInForce.FOK: Tif.FOK}
TIME_IN_FORCE = {v: k for k, v in TIFS.items()}
STPS = {r.SelfTradePrevention.CANCEL_NEWEST: Stp.CANCEL_NEWEST,
        r.SelfTradePrevention.CANCEL_OLDEST: Stp.CANCEL_OLDEST,
        r.SelfTradePrevention.CANCEL_BOTH: Stp.CANCEL_BOTH, r.SelfTradePrevention.NONE: Stp.NONE}
PERCENT_TO_PPM = Decimal(10_000)


def fmt(d: Decimal) -> str:
    """A decimal as a person writes it: 3.06, not 3.060000000000000000 (wire values carry scale 18)."""
    return format(d.normalize(), "f")


class RuleViolation(Exception):
    """An order breaks an instrument rule; becomes an OrderRejected with `reason`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class InstrumentRules:
    symbol: str
    tick: Decimal
    lot: Decimal
    min_qty: Decimal
    min_notional: Decimal
    enabled: bool

    @classmethod
    def of(cls, i: r.Instrument) -> InstrumentRules:
        if i.tick_size <= 0 or i.lot_size <= 0:
            raise ValueError(f"{i.symbol}: tick and lot size must be > 0")
        return cls(i.symbol, i.tick_size, i.lot_size, i.min_quantity, i.min_notional, i.enabled)

    def ticks(self, price: Decimal, field: str = "price") -> int:
        return _steps(price, self.tick, field, Reason.INVALID_TICK_SIZE, Reason.INVALID_PRICE)

    def lots(self, qty: Decimal, field: str = "quantity") -> int:
        return _steps(qty, self.lot, field, Reason.INVALID_LOT_SIZE, Reason.INVALID_QUANTITY)

    def price(self, ticks: int) -> Decimal:
        return ticks * self.tick

    def qty(self, lots: int) -> Decimal:
        return lots * self.lot

    def order(self, c: r.SubmitOrder) -> NewOrder:
        """The core's order for a SubmitOrder; RuleViolation when a rule is broken."""
        if not self.enabled:
            raise RuleViolation(Reason.TRADING_HALTED, f"trading in {self.symbol} is halted")
        lots = self.lots(c.quantity)  # grid violations first: they are the more specific error
        price = None if c.price is None else self.ticks(c.price)
        if c.quantity < self.min_qty:
            raise RuleViolation(Reason.BELOW_MIN_QUANTITY,
                                f"quantity {fmt(c.quantity)} below {fmt(self.min_qty)}")
        if c.price is not None and c.price * c.quantity < self.min_notional:
            raise RuleViolation(Reason.BELOW_MIN_NOTIONAL,
                                f"notional {fmt(c.price * c.quantity)} below {fmt(self.min_notional)}")
        trail = trail_ppm = None
        if c.trailing_offset is not None:
            if c.trailing_offset_type is r.TrailingOffsetType.PERCENT:
                trail_ppm = int(c.trailing_offset * PERCENT_TO_PPM)
            else:
                trail = self.ticks(c.trailing_offset, "trailing_offset")
        budget = None
        if c.quote_budget is not None:
            budget = int(c.quote_budget // (self.tick * self.lot))
        return NewOrder(
            c.order_id, c.account_id, c.client_order_id, c.side is r.Side.BUY, lots,
            kind=KINDS[c.order_type], tif=TIFS[c.time_in_force], price=price,
            stop_price=None if c.stop_price is None else self.ticks(c.stop_price, "stop_price"),
            trail=trail, trail_ppm=trail_ppm,
            display=None if c.display_quantity is None else self.lots(c.display_quantity, "display_quantity"),
            budget=budget, post_only=c.post_only, expire_at=c.expire_at, stp=STPS[c.self_trade_prevention],
        )


def _steps(value: Decimal, step: Decimal, field: str, off_grid: str, not_positive: str) -> int:
    """How many `step`s make `value`; a RuleViolation when it is off the grid or not positive."""
    n, rest = divmod(value, step)
    if rest:
        raise RuleViolation(off_grid, f"{field} {fmt(value)} is not a multiple of {fmt(step)}")
    if n <= 0:
        raise RuleViolation(not_positive, f"{field} must be > 0")
    return int(n)

"""Trading arithmetic every service must agree on: fees, what an order can cost, positions.

Exact decimals only. Collateral settles with these functions and execution
reports with them, so a fee on a balance and the fee on a report are the same
number.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal

from orderstream.common import records as r

ZERO = Decimal(0)
QUANTUM = Decimal("1e-18")  # the scale of every decimal on the wire

PRICED = frozenset({r.OrderType.LIMIT, r.OrderType.STOP_LIMIT, r.OrderType.TAKE_PROFIT_LIMIT})
TERMINAL = frozenset(
    {r.OrderStatus.FILLED, r.OrderStatus.CANCELED, r.OrderStatus.REJECTED, r.OrderStatus.EXPIRED}
)


def fee(notional: Decimal, rate: Decimal) -> Decimal:
    """The fee on `notional` at `rate`, rounded up to the wire scale (the house never loses a unit)."""
    return (notional * rate).quantize(QUANTUM, rounding=ROUND_UP)


def fee_rate(instrument: r.Instrument, liquidity: r.Liquidity | None) -> Decimal:
    return instrument.maker_fee if liquidity == r.Liquidity.MAKER else instrument.taker_fee


def is_priced(order_type: r.OrderType, price: Decimal | None) -> bool:
    """Whether an order's cost is bounded by its limit price (else by a quote budget)."""
    return order_type in PRICED or (order_type == r.OrderType.TRAILING_STOP and price is not None)


def cost(
    instrument: r.Instrument,
    side: r.Side,
    order_type: r.OrderType,
    quantity: Decimal,
    price: Decimal | None,
    quote_budget: Decimal | None,
) -> tuple[str, Decimal] | None:
    """What an order for `quantity` can still cost, as (asset, amount); None when it cannot be bounded.

    A sell can cost its quantity of the base asset. A priced buy can cost price x quantity
    plus the larger fee; an unpriced (market) buy can cost its quote budget plus the taker fee.
    """
    if side == r.Side.SELL:
        return instrument.base_asset, quantity
    if is_priced(order_type, price):
        assert price is not None
        notional = price * quantity
        return instrument.quote_asset, notional + fee(
            notional, max(instrument.maker_fee, instrument.taker_fee)
        )
    if quote_budget is None:
        return None
    return instrument.quote_asset, quote_budget + fee(quote_budget, instrument.taker_fee)


@dataclass
class Position:
    """A signed position with average cost and realized P&L, both in the quote asset."""

    quantity: Decimal = ZERO
    average_cost: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO

    def fill(self, side: r.Side, quantity: Decimal, price: Decimal, paid_fee: Decimal) -> Decimal:
        """Apply one fill; the P&L it realized."""
        signed = quantity if side == r.Side.BUY else -quantity
        self.fees += paid_fee
        realized = ZERO
        if self.quantity == 0 or (self.quantity > 0) == (signed > 0):
            total = self.quantity + signed
            self.average_cost = (
                (self.average_cost * abs(self.quantity) + price * quantity) / abs(total)
            ).quantize(QUANTUM)
            self.quantity = total
            return realized
        closing = min(abs(signed), abs(self.quantity))
        direction = 1 if self.quantity > 0 else -1
        # the average cost is rounded to the wire scale, so P&L is rounded the same way
        realized = ((price - self.average_cost) * closing * direction).quantize(QUANTUM)
        self.realized += realized
        self.quantity += signed
        if self.quantity == 0:
            self.average_cost = ZERO
        elif (self.quantity > 0) != (direction > 0):  # flipped: the rest opens at this price
            self.average_cost = price
        return realized

    def unrealized(self, mark: Decimal) -> Decimal:
        return ((mark - self.average_cost) * self.quantity).quantize(QUANTUM)

    def to_doc(self) -> list[str]:
        return [str(self.quantity), str(self.average_cost), str(self.realized), str(self.fees)]

    @classmethod
    def from_doc(cls, doc: list[str] | None) -> Position:
        return cls(*(Decimal(x) for x in doc)) if doc else cls()

"""Index orders by collateral amount: how many basket units an amount buys from the visible books.

No I/O. One definition for the gateway's quote and the router's rounds:

- a *unit* of an index is `weight` of each leg's symbol; units move in steps that keep every leg's
  quantity on its lot size and the units themselves on the wire's 18 decimal places (`unit_step`);
- `fit` finds the largest number of units whose cost fits an amount, walking each leg's ask
  levels (at or below the leg's price cap, if any) from the best one. What a leg costs depends on
  the `pricing`:
  - `TAKER`: what the units cost if they fill as the books show them now: each level's price x
    quantity, plus the taker fee. A quote answers this;
  - `LIMIT`: what a limit buy at the worst level walked can cost at most (collateral's `cost`:
    limit price x quantity plus the larger of the two fees). The router plans child orders
    with it, so that what they can cost never exceeds the collateral left;
- a fit can top up legs that already hold more than the units done (`filled`): the next units
  ask each leg for what it lacks, not for a full unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from fractions import Fraction
from math import gcd

from orderstream.common import records as r
from orderstream.common.trading import QUANTUM, ZERO, cost, fee

Asks = Sequence[tuple[Decimal, Decimal]]  # (price, quantity), best (lowest) first


WORKING, COMPLETED, CANCELED, REJECTED = (
    "WORKING",
    "COMPLETED",
    "CANCELED",
    "REJECTED",
)  # index order statuses


class Pricing(StrEnum):
    TAKER = "TAKER"
    LIMIT = "LIMIT"


class Limit(StrEnum):
    """What stopped a fit from buying more units."""

    FUNDS = "FUNDS"  # the amount: one more step of units would cost more than it
    LIQUIDITY = "LIQUIDITY"  # a leg's book (under its price cap) holds no more
    SIZE = "SIZE"  # a leg's child order would be above its largest allowed quantity


@dataclass(frozen=True)
class Leg:
    symbol: str
    weight: Decimal
    price_cap: Decimal | None = None  # levels above it are not walked
    filled: Decimal = ZERO  # what the leg already holds (router rounds); a quote starts from 0


@dataclass(frozen=True)
class LegFit:
    symbol: str
    quantity: Decimal  # what this leg buys for the units (0: the leg already holds enough)
    notional: Decimal  # the levels walked: price x quantity
    average_price: Decimal | None  # notional / quantity at the wire scale; None for 0
    limit_price: Decimal | None  # the worst level walked: a child order's limit price
    fee: Decimal  # taker fee on the notional (TAKER), the larger fee on limit x quantity (LIMIT)
    cost: Decimal  # what the leg costs (TAKER) or can cost at most (LIMIT), fee included


@dataclass(frozen=True)
class Fit:
    units: Decimal  # the units done afterwards (what is already done plus what this fit buys)
    step: Decimal
    legs: tuple[LegFit, ...]
    cost: Decimal
    fees: Decimal
    unspent: Decimal  # the amount minus the cost
    limited_by: Limit


class NotAnIndex(ValueError):
    """The legs cannot make an index: `field` names what is wrong (the gateway answers 40001 with it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def collateral_asset(legs: Sequence[Leg], instruments: Mapping[str, r.Instrument]) -> str:
    """The one quote asset every leg is priced in: what the index order's collateral is."""
    assets = []
    for i, leg in enumerate(legs):
        inst = instruments.get(leg.symbol)
        if inst is None or not inst.enabled:
            raise NotAnIndex(f"legs.{i}.symbol", f"unknown symbol {leg.symbol}")
        assets.append(inst.quote_asset)
    if len(set(assets)) != 1:
        raise NotAnIndex(
            "legs",
            f"every leg must be priced in one quote asset (the collateral); "
            f"these are in {', '.join(sorted(set(assets)))}",
        )
    return assets[0]


def _lcm(a: Fraction, b: Fraction) -> Fraction:
    """The smallest positive rational that both `a` and `b` divide (both reduced, positive)."""
    num = a.numerator * b.numerator // gcd(a.numerator, b.numerator)
    return Fraction(num, gcd(a.denominator, b.denominator))


def unit_step(legs: Sequence[Leg], instruments: Mapping[str, r.Instrument]) -> Decimal:
    """The smallest number of units that puts every leg on its lot size (and the units on the wire scale)."""
    step = Fraction(1, 10**18)
    for leg in legs:
        step = _lcm(step, Fraction(instruments[leg.symbol].lot_size) / Fraction(leg.weight))
    return Decimal(step.numerator) / Decimal(step.denominator)


def units_done(legs: Sequence[Leg], step: Decimal) -> Decimal:
    """Complete units the legs' fills make: the smallest filled / weight, down to the unit step."""
    least = min(leg.filled / leg.weight for leg in legs)
    return (least / step).to_integral_value(rounding=ROUND_DOWN) * step


def walk(asks: Asks, quantity: Decimal, cap: Decimal | None) -> tuple[Decimal, Decimal] | None:
    """(notional, worst price) of buying `quantity` from `asks` at or below `cap`; None: they hold less."""
    left, notional, worst = quantity, ZERO, ZERO
    for price, size in asks:
        if left <= 0:
            break
        if cap is not None and price > cap:
            break
        take = min(left, size)
        notional += price * take
        left -= take
        worst = price
    return None if left > 0 else (notional, worst)


def _available(asks: Asks, cap: Decimal | None) -> Decimal:
    return sum((size for price, size in asks if cap is None or price <= cap), ZERO)


def fit(
    legs: Sequence[Leg],
    amount: Decimal,
    books: Mapping[str, Asks],
    instruments: Mapping[str, r.Instrument],
    pricing: Pricing,
    max_quantity: Decimal | None = None,
) -> Fit:
    """The largest units whose cost fits `amount` (see the module doc); `max_quantity` caps each child.

    Each leg's child must be one the venue takes (at least its minimum quantity and notional, the
    notional at the child's limit price) unless the leg asks for nothing."""
    step = unit_step(legs, instruments)
    base = units_done(legs, step)

    def quantity(leg: Leg, k: int) -> Decimal:
        return max((base + k * step) * leg.weight - leg.filled, ZERO)

    def leg_fit(leg: Leg, k: int) -> LegFit | None:
        qty = quantity(leg, k)
        if qty == 0:
            return LegFit(leg.symbol, ZERO, ZERO, None, None, ZERO, ZERO)
        walked = walk(books.get(leg.symbol, ()), qty, leg.price_cap)
        if walked is None:
            return None
        notional, worst = walked
        inst = instruments[leg.symbol]
        if pricing == Pricing.TAKER:
            paid = fee(notional, inst.taker_fee)
            total = notional + paid
        else:
            need = cost(inst, r.Side.BUY, r.OrderType.LIMIT, qty, worst, None)
            assert need is not None
            total, paid = need[1], need[1] - worst * qty
        return LegFit(leg.symbol, qty, notional, (notional / qty).quantize(QUANTUM), worst, paid, total)

    def at(k: int) -> tuple[LegFit, ...] | None:
        fits = [leg_fit(leg, k) for leg in legs]
        return None if any(f is None for f in fits) else tuple(f for f in fits if f is not None)

    def taken(leg: Leg, k: int) -> bool:
        lf = leg_fit(leg, k)
        if lf is None or lf.limit_price is None:
            return False
        inst = instruments[leg.symbol]
        return lf.quantity >= inst.min_quantity and lf.quantity * lf.limit_price >= inst.min_notional

    # the most steps the books under the caps (and the size cap) hold for every leg
    top, limited = -1, Limit.LIQUIDITY
    for leg in legs:
        bounds = [(_available(books.get(leg.symbol, ()), leg.price_cap), Limit.LIQUIDITY)]
        if max_quantity is not None:
            bounds.append((max_quantity, Limit.SIZE))
        for bound, why in bounds:
            k = max(int((((bound + leg.filled) / leg.weight - base) / step).to_integral_value(ROUND_DOWN)), 0)
            if top < 0 or k < top:
                top, limited = k, why
    while top > 0 and at(top) is None:  # a division rounded up: one step less
        top -= 1

    # per leg: up to `z` steps it asks for nothing; from `t` on its child is one the venue takes
    zs = [
        max(int(((leg.filled / leg.weight - base) / step).to_integral_value(ROUND_DOWN)), 0) for leg in legs
    ]
    ts: list[int | None] = []
    for leg, z in zip(legs, zs, strict=True):
        lo, hi = z + 1, top + 1  # bisection for the first k in (z, top] the venue takes; top + 1: none
        while lo < hi:
            mid = (lo + hi) // 2
            if taken(leg, mid):
                hi = mid
            else:
                lo = mid + 1
        ts.append(lo if lo <= top else None)

    def valid(k: int) -> bool:
        return all(k <= z or (t is not None and k >= t) for z, t in zip(zs, ts, strict=True))

    # the largest k whose cost fits (cost grows with k), then down to one every venue takes
    lo, hi = 0, top
    while lo < hi:
        mid = (lo + hi + 1) // 2
        fits = at(mid)
        if fits is not None and sum((f.cost for f in fits), ZERO) <= amount:
            lo = mid
        else:
            hi = mid - 1
    best = lo
    if best < top:
        limited = Limit.FUNDS
    while best > 0 and not valid(best):  # below the smallest child a leg's venue takes: that leg asks nothing
        best = min(z for z, t in zip(zs, ts, strict=True) if not (best <= z or (t is not None and best >= t)))
    if best == 0:
        candidates = [1, *(t for t in ts if t is not None)]
        if not any(1 <= c <= top and valid(c) for c in candidates):
            limited = Limit.LIQUIDITY if limited == Limit.FUNDS else limited
        zero = tuple(LegFit(leg.symbol, ZERO, ZERO, None, None, ZERO, ZERO) for leg in legs)
        return Fit(base, step, zero, ZERO, ZERO, amount, limited)
    fits = at(best)
    assert fits is not None
    spent = sum((f.cost for f in fits), ZERO)
    return Fit(
        base + best * step, step, fits, spent, sum((f.fee for f in fits), ZERO), amount - spent, limited
    )


def refused(cmd: r.SubmitIndexOrder, reason: str, ts: int) -> r.IndexOrderUpdated:
    """The one event of an index order refused before any round (by collateral: funds, symbols)."""
    return r.IndexOrderUpdated(
        event_id=f"{cmd.order_id}:index:1",
        ts_event=ts,
        account_id=cmd.account_id,
        order_id=cmd.order_id,
        client_order_id=cmd.client_order_id,
        sequence=1,
        status=REJECTED,
        reason=reason,
        asset=cmd.asset,
        collateral_amount=cmd.collateral_amount,
        spent=ZERO,
        left=ZERO,
        units=ZERO,
        rounds=0,
        open_children=0,
        legs=[
            r.IndexLegProgress(
                symbol=x.symbol, weight=x.weight, filled_quantity=ZERO, average_price=None, fees=ZERO
            )
            for x in cmd.legs
        ],
    )

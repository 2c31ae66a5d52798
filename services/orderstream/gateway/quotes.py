"""Quotes and index orders at the gateway: legs checked against the instruments, the books they are
fitted to (the md.depth snapshots the gateway follows), the quote's answer and the price caps of an
index order placed from a quote. The fitting itself is common/index.py's, the router's too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.index import Fit, Leg, NotAnIndex, collateral_asset
from orderstream.gateway import api
from orderstream.gateway.errors import ApiError

INTERNAL = "INTERNAL"
QUOTE_TTL_NS = 10 * 10**9  # a quote is kept, and can be placed from, for 10 s
Books = dict[str, tuple[int, list[tuple[Decimal, Decimal]]]]  # symbol -> (md sequence, asks best first)


def index_legs(
    legs: Sequence[api.IndexLeg], instruments: Mapping[str, r.Instrument]
) -> tuple[list[Leg], str]:
    """The legs as the fitting takes them and their collateral asset; a field error when a leg is unknown,
    trades at an external venue (whose book the gateway does not see), or is priced in another asset."""
    for i, leg in enumerate(legs):
        inst = instruments.get(leg.symbol)
        if inst is None or not inst.enabled:
            raise ApiError(40010, f"unknown symbol {leg.symbol}", {"field": f"legs.{i}.symbol"})
        if inst.venue != INTERNAL:
            raise ApiError(
                40001,
                f"invalid legs.{i}.symbol: {leg.symbol} trades at {inst.venue}; an index order buys on the "
                "internal venue, whose book quotes and rounds are fitted to",
                {"field": f"legs.{i}.symbol", "issue": "external venue"},
            )
    fitted = [Leg(leg.symbol, leg.weight) for leg in legs]
    try:
        return fitted, collateral_asset(fitted, instruments)
    except NotAnIndex as exc:
        raise ApiError(
            40001, f"invalid {exc.field}: {exc}", {"field": exc.field, "issue": str(exc)}
        ) from None


def books_of(legs: Sequence[Leg], depth: Any) -> Books:
    """Each leg's asks from its latest depth snapshot (no snapshot: an empty book at sequence 0)."""
    books: Books = {}
    for leg in legs:
        snap: r.DepthSnapshot | None = depth.get(leg.symbol)
        asks = (
            [] if snap is None else [(x.price, x.quantity) for x in snap.levels if x.side == r.BookSide.ASK]
        )
        books[leg.symbol] = (0 if snap is None else snap.sequence, asks)
    return books


def view(
    quote_id: str,
    expires_at: int,
    asset: str,
    amount: Decimal,
    fitted: Fit,
    legs: Sequence[Leg],
    books: Books,
) -> dict[str, Any]:
    """The quote's answer (api.Quote)."""
    return {
        "quote_id": quote_id,
        "expires_at": expires_at,
        "asset": asset,
        "collateral_amount": api.plain(amount),
        "units": api.plain(fitted.units),
        "unit_step": api.plain(fitted.step),
        "legs": [
            {
                "symbol": leg.symbol,
                "weight": api.plain(leg.weight),
                "quantity": api.plain(lf.quantity),
                "average_price": None if lf.average_price is None else api.plain(lf.average_price),
                "limit_price": None if lf.limit_price is None else api.plain(lf.limit_price),
                "notional": api.plain(lf.notional),
                "fee": api.plain(lf.fee),
                "cost": api.plain(lf.cost),
            }
            for leg, lf in zip(legs, fitted.legs, strict=True)
        ],
        "cost": api.plain(fitted.cost),
        "fees": api.plain(fitted.fees),
        "unspent": api.plain(fitted.unspent),
        "limited_by": fitted.limited_by.value,
        "books": {symbol: seq for symbol, (seq, _) in books.items()},
    }


def references(quote: dict[str, Any] | None, legs: Sequence[Leg], books: Books) -> dict[str, Decimal | None]:
    """Per leg, the price a slippage bound is taken from: the quote's limit price (its best ask when it
    bought nothing of the leg), else the best ask now; None when there is none."""
    if quote is not None:
        stored = {x["symbol"]: x for x in quote["legs"]}
        return {
            leg.symbol: _dec(stored[leg.symbol]["limit_price"] or stored[leg.symbol]["best_ask"])
            for leg in legs
        }
    return {leg.symbol: books[leg.symbol][1][0][0] if books[leg.symbol][1] else None for leg in legs}


def same_legs(quote: dict[str, Any], legs: Sequence[Leg]) -> bool:
    return [(x["symbol"], Decimal(x["weight"])) for x in quote["legs"]] == [
        (x.symbol, x.weight) for x in legs
    ]


def price_cap(reference: Decimal | None, slippage: Decimal, instrument: r.Instrument) -> Decimal | None:
    """reference x (1 + slippage), down to the tick size."""
    if reference is None:
        return None
    ticks = (reference * (1 + slippage) / instrument.tick_size).to_integral_value(rounding=ROUND_DOWN)
    return ticks * instrument.tick_size


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)

"""Ticker (UTC-day statistics) and one-minute candles of a symbol, from its trades. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orderstream.common import records as r

DAY_NS = 86_400 * 10**9
MINUTE_NS = 60 * 10**9


@dataclass
class Bar:
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int

    @classmethod
    def opening(cls, start: int, t: r.Trade) -> Bar:
        return cls(start, t.price, t.price, t.price, t.price, t.quantity, 1)

    def add(self, t: r.Trade) -> None:
        self.high, self.low, self.close = max(self.high, t.price), min(self.low, t.price), t.price
        self.volume += t.quantity
        self.trades += 1

    def to_doc(self) -> list[Any]:
        return [
            self.start,
            str(self.open),
            str(self.high),
            str(self.low),
            str(self.close),
            str(self.volume),
            self.trades,
        ]

    @classmethod
    def from_doc(cls, d: list[Any]) -> Bar:
        o, h, lo, c, v = (Decimal(x) for x in d[1:6])
        return cls(d[0], o, h, lo, c, v, d[6])


@dataclass
class SymbolStats:
    """The day bar and minute bar of one symbol, and the last trade's sequence number."""

    symbol: str
    day: Bar | None = None
    minute: Bar | None = None
    sequence: int = 0
    last_quantity: Decimal = Decimal(0)

    def on_trade(self, t: r.Trade) -> tuple[r.Ticker, r.Candle] | None:
        """Ticker and candle after `t`; None when `t` was already counted."""
        if t.sequence <= self.sequence:
            return None
        self.sequence, self.last_quantity = t.sequence, t.quantity
        day, minute = t.ts_event - t.ts_event % DAY_NS, t.ts_event - t.ts_event % MINUTE_NS
        for attr, start in (("day", day), ("minute", minute)):
            bar = getattr(self, attr)
            if bar is None or bar.start != start:
                setattr(self, attr, Bar.opening(start, t))
            else:
                bar.add(t)
        d, m = self.day, self.minute
        assert d is not None and m is not None
        ticker = r.Ticker(
            symbol=t.symbol,
            ts_event=t.ts_event,
            last_price=t.price,
            last_quantity=t.quantity,
            open=d.open,
            high=d.high,
            low=d.low,
            volume=d.volume,
            trades=d.trades,
            sequence=t.sequence,
        )
        candle = r.Candle(
            symbol=t.symbol,
            ts_event=t.ts_event,
            start=m.start,
            interval_s=60,
            open=m.open,
            high=m.high,
            low=m.low,
            close=m.close,
            volume=m.volume,
            trades=m.trades,
        )
        return ticker, candle

    def to_doc(self) -> dict[str, Any]:
        return {
            "day": self.day.to_doc() if self.day else None,
            "minute": self.minute.to_doc() if self.minute else None,
            "sequence": self.sequence,
            "last_quantity": str(self.last_quantity),
        }

    @classmethod
    def from_doc(cls, symbol: str, d: dict[str, Any] | None) -> SymbolStats:
        if not d:
            return cls(symbol)
        return cls(
            symbol,
            Bar.from_doc(d["day"]) if d["day"] else None,
            Bar.from_doc(d["minute"]) if d["minute"] else None,
            d["sequence"],
            Decimal(d["last_quantity"]),
        )

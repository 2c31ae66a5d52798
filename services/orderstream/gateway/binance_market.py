"""Market data in Binance's shapes: symbol names, decimal strings, and the recent trades and one-minute
candles per symbol that Binance's REST API serves (trades, aggTrades, klines) and md.* do not keep.

A consumer of its own reads md.trades and md.candles: at start the last `BACKFILL` records of each
partition (so a restarted gateway still answers), then as they come. What it keeps is bounded: the
last `trades_kept` trades and `candles_kept` one-minute candles per symbol, and per minute the quote
volume and taker-buy volumes counted from the trades (a Candle carries neither).
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiokafka import AIOKafkaConsumer

from orderstream.common import records as r
from orderstream.common.codec import AvroCodec, DecodeError, RegistryUnavailable
from orderstream.common.mirror import Mirror
from orderstream.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

BACKFILL = 5000  # records per partition read back at start
EIGHT = Decimal("1e-8")
MINUTE_MS = 60_000
INTERVALS_MS = {
    "1m": MINUTE_MS,
    "3m": 3 * MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "30m": 30 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "2h": 120 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "6h": 360 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "12h": 720 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}


def bn(value: Decimal | str | int | None) -> str:
    """A decimal as Binance writes it: at least 8 decimal places ("0.50000000"), more only when the
    value has them (exact, never through a float)."""
    d = Decimal(0) if value is None else Decimal(value)
    q = d.quantize(EIGHT)
    return format(q if q == d else d.normalize(), "f")


def bn_symbol(instrument: r.Instrument) -> str:
    """Binance's symbol name: base and quote asset concatenated (BTC-USD -> BTCUSD)."""
    return instrument.base_asset + instrument.quote_asset


def number(text: str) -> int:
    """A stable integer below 2^53 for an id that is not one (JavaScript clients read ids as doubles):
    the digits after the last `-` when they are all digits (the matcher's trade ids), else a hash."""
    tail = text.rsplit("-", 1)[-1]
    if tail.isascii() and tail.isdigit() and len(tail) < 16:
        return int(tail)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 11


def ms(ns: int) -> int:
    return ns // 1_000_000


@dataclass
class Minute:
    """What a Candle lacks, counted from the minute's trades."""

    quote: Decimal = Decimal(0)
    taker_buy_base: Decimal = Decimal(0)
    taker_buy_quote: Decimal = Decimal(0)


@dataclass
class SymbolData:
    trades: deque[r.Trade]
    candles: OrderedDict[int, r.Candle] = field(default_factory=OrderedDict)  # open time ms -> latest
    minutes: OrderedDict[int, Minute] = field(default_factory=OrderedDict)
    last_trade_sequence: int = -1


class MarketCache:
    def __init__(self, settings: GatewaySettings, codec: AvroCodec) -> None:
        self.settings, self.codec = settings, codec
        self.trades_kept, self.candles_kept = settings.binance_trades_kept, settings.binance_candles_kept
        self.symbols: dict[str, SymbolData] = {}
        self.tickers = Mirror.standalone(settings, codec, "md.ticker", r.Ticker)
        self.listeners: list[Any] = []  # called with each new record (the kline streams)

    def of(self, symbol: str) -> SymbolData:
        data = self.symbols.get(symbol)
        if data is None:
            data = self.symbols[symbol] = SymbolData(deque(maxlen=self.trades_kept))
        return data

    async def run(self) -> None:
        topics = [self.settings.topic("md.trades"), self.settings.topic("md.candles")]
        consumer = AIOKafkaConsumer(*topics, bootstrap_servers=self.settings.kafka_bootstrap_servers,
                                    group_id=None, enable_auto_commit=False)  # no group: every partition
        await consumer.start()
        try:
            placed: set[Any] = set()
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                new = consumer.assignment() - placed
                if new:  # read each new partition's last BACKFILL records (this batch comes again)
                    ends = await consumer.end_offsets(list(new))
                    begins = await consumer.beginning_offsets(list(new))
                    for tp in new:
                        consumer.seek(tp, max(begins[tp], ends[tp] - BACKFILL))
                    placed |= new
                    continue
                for messages in batches.values():
                    for msg in messages:
                        self._decode(msg.value)
        finally:
            await consumer.stop()

    def _decode(self, value: bytes | None) -> None:
        try:
            record = self.codec.decode(value)
        except (DecodeError, RegistryUnavailable) as exc:
            log.warning("a market-data record was not cached", extra={"error": str(exc)})
            return
        self.take(record)

    def take(self, record: Any) -> None:
        """A Trade or Candle into the cache (a trade seen before is skipped)."""
        if isinstance(record, r.Trade):
            data = self.of(record.symbol)
            if record.sequence <= data.last_trade_sequence:
                return
            data.last_trade_sequence = record.sequence
            data.trades.append(record)
            minute = ms(record.ts_event) // MINUTE_MS * MINUTE_MS
            m = data.minutes.get(minute)
            if m is None:
                m = data.minutes[minute] = Minute()
                while len(data.minutes) > self.candles_kept:
                    data.minutes.popitem(last=False)
            quote = record.price * record.quantity
            m.quote += quote
            if record.aggressor_side == r.Side.BUY:
                m.taker_buy_base += record.quantity
                m.taker_buy_quote += quote
        elif isinstance(record, r.Candle) and record.interval_s == 60:
            data = self.of(record.symbol)
            start = ms(record.start)
            old = data.candles.get(start)
            if old is not None and old.ts_event > record.ts_event:
                return
            closed = None
            if old is None and data.candles:
                closed = data.candles[next(reversed(data.candles))]
            data.candles[start] = record
            while len(data.candles) > self.candles_kept:
                data.candles.popitem(last=False)
            for listener in self.listeners:
                listener(record, closed)

    # -- answers -----------------------------------------------------------------------------

    def recent_trades(self, symbol: str, limit: int) -> list[r.Trade]:
        trades = self.of(symbol).trades
        return list(trades)[-limit:] if limit < len(trades) else list(trades)

    def klines(
        self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[list[Any]]:
        """Binance's klines from the kept one-minute candles: [open time, open, high, low, close, volume,
        close time, quote volume, trades, taker buy base volume, taker buy quote volume, "0"]."""
        data = self.of(symbol)
        size = INTERVALS_MS[interval]
        buckets: dict[int, list[r.Candle]] = {}
        for start in sorted(data.candles):
            buckets.setdefault(start // size * size, []).append(data.candles[start])
        rows = [self.kline(data, opened, candles, size) for opened, candles in sorted(buckets.items())]
        rows = [
            k for k in rows if (start_ms is None or k[0] >= start_ms) and (end_ms is None or k[0] <= end_ms)
        ]
        return rows[:limit] if start_ms is not None else rows[-limit:]

    def kline_of(self, symbol: str, interval: str, open_ms: int) -> list[Any]:
        """The kline of `interval` that holds the minute starting at `open_ms`."""
        data, size = self.of(symbol), INTERVALS_MS[interval]
        opened = open_ms // size * size
        candles = [c for start, c in data.candles.items() if opened <= start < opened + size]
        return self.kline(data, opened, sorted(candles, key=lambda c: c.start), size)

    @staticmethod
    def kline(data: SymbolData, opened: int, candles: list[r.Candle], size: int) -> list[Any]:
        extra = [data.minutes.get(ms(c.start), Minute()) for c in candles]
        return [
            opened,
            bn(candles[0].open),
            bn(max(c.high for c in candles)),
            bn(min(c.low for c in candles)),
            bn(candles[-1].close),
            bn(sum((c.volume for c in candles), Decimal(0))),
            opened + size - 1,
            bn(sum((m.quote for m in extra), Decimal(0))),
            sum(c.trades for c in candles),
            bn(sum((m.taker_buy_base for m in extra), Decimal(0))),
            bn(sum((m.taker_buy_quote for m in extra), Decimal(0))),
            "0",
        ]

    def quote_volume_since(self, symbol: str, since_ms: int) -> Decimal:
        return sum((m.quote for t, m in self.of(symbol).minutes.items() if t >= since_ms), Decimal(0))

"""The gateway's streams: execution reports, balance changes and order-list, basket, algo and index
events to their owner's WebSocket connections (the user stream), and book updates, trades, tickers
and candles to the subscribers of their symbol (the market stream).

Each connection has a bounded send queue drained by its own task; a client too slow to take what it
is sent (its queue full) is told so (50301) and disconnected, so that one slow reader never holds up
the fan-out to the others. A frame sent to many connections is encoded once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiokafka import AIOKafkaConsumer

from orderstream.common import records as r
from orderstream.common.codec import DecodeError, RegistryUnavailable
from orderstream.gateway.auth import Principal
from orderstream.gateway.core import MARKET_TOPICS, USER_TOPICS, Core
from orderstream.gateway.errors import ApiError
from orderstream.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

MARKET_KINDS: dict[type[Any], str] = {r.BookUpdate: "book", r.Trade: "trade", r.Ticker: "ticker",
                                           r.Candle: "candle"}


class Connection:
    """One WebSocket client: a bounded send queue drained by its own task."""

    def __init__(self, ws: web.WebSocketResponse, limit: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any] | str | None] = asyncio.Queue(limit)
        self.principal: Principal | None = None
        self.user_stream = False
        self.markets: dict[str, int] = {}  # symbol -> md sequence of the snapshot it was sent
        self.in_flight = asyncio.Semaphore(PIPELINE_DEPTH)  # orders awaiting the broker, per connection
        self.tasks: set[asyncio.Task[None]] = set()
        self.sender = asyncio.get_running_loop().create_task(self._drain())

    def push(self, msg: dict[str, Any] | str) -> bool:
        """Queue a message (a dict, or JSON text already: a frame sent to many clients is encoded
        once); False when the client is too slow (its queue is full)."""
        try:
            self.queue.put_nowait(msg)
            return True
        except asyncio.QueueFull:
            return False

    async def _drain(self) -> None:
        while (msg := await self.queue.get()) is not None:
            await self.ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))

    def user_message(self, event: Any, frame: str) -> str | None:
        """What this client gets for a user-stream record (`frame`: the /ws push); None: nothing."""
        return frame

    def market_message(self, record: Any, frame: str) -> str | None:
        """What this client gets for a market-data record (`frame`: the /ws push); None: nothing."""
        return frame

    def close(self) -> None:
        """The client is gone: the sender ends after what is queued (at once when the queue is full)."""
        if self.queue.full():
            self.sender.cancel()
        else:
            self.queue.put_nowait(None)


class Streams(Core):
    """The user and market streams of the gateway's connections."""

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__(settings)
        self.market_subscribers: dict[str, set[Connection]] = {}
        self.connections: dict[str, set[Connection]] = {}
        # per account: who else hears its execution reports (FIX order entry sessions)
        self.report_sinks: dict[str, set[Callable[[r.ExecutionReport], Awaitable[None]]]] = {}
        self.reports_ready = asyncio.Event()  # the report reader has its positions: nothing after is missed

    async def _reports(self) -> None:
        """Execution reports, balance changes and basket outcomes, to their owner's user streams.

        The topics are keyed by account: a record is decoded only when a user stream of its
        account is open here."""
        consumer = AIOKafkaConsumer(
            *(self.settings.topic(t) for t in USER_TOPICS),
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        reports = self.settings.topic("execution.reports")
        await consumer.start()
        try:
            await positioned(consumer)  # "latest" fixed now, not at the first fetch: a report of an
            self.reports_ready.set()  # order taken once /healthz says ok is never passed over
            while True:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    for msg in batch:
                        account = msg.key.decode(errors="replace") if msg.key is not None else ""
                        listeners = [c for c in self.connections.get(account, ()) if c.user_stream]
                        waiting = msg.topic == reports and account in self.outstanding.by_account
                        sinks = self.report_sinks.get(account, ()) if msg.topic == reports else ()
                        if not listeners and not waiting and not sinks:
                            continue
                        try:
                            event = self.codec.decode(msg.value)
                        except (DecodeError, RegistryUnavailable) as exc:  # dead-lettered or retried there
                            log.warning("a user-stream record was not pushed", extra={"error": str(exc)})
                            continue
                        if waiting and isinstance(event, r.ExecutionReport) and event.sequence == 1:
                            self.outstanding.reported(account, event.order_id)
                        if listeners:
                            await self._push_user(event, listeners)
                        if isinstance(event, r.ExecutionReport):
                            for sink in list(sinks):
                                await sink(event)
        finally:
            await consumer.stop()

    async def _push_user(self, event: Any, listeners: list[Connection]) -> None:
        kind = USER_EVENT_TYPES.get(type(event).__name__) or _snake(type(event).__name__)
        frame = json.dumps({"stream": "user", "type": kind, "data": event.model_dump(mode="json")})
        for conn in listeners:
            msg = conn.user_message(event, frame)
            if msg is not None and not conn.push(msg):
                await self._drop_slow(conn)

    async def _market_data(self) -> None:
        """Book updates, trades and tickers, to the subscribers of their symbol (keyed by symbol:
        a record is decoded only when its symbol has subscribers here)."""
        topics = [self.settings.topic(t) for t in MARKET_TOPICS]
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            while True:
                for batch in (await consumer.getmany(timeout_ms=1000)).values():
                    for msg in batch:
                        symbol = msg.key.decode(errors="replace") if msg.key is not None else ""
                        if self.market_subscribers.get(symbol):
                            await self._push_market(msg.value)
        finally:
            await consumer.stop()

    async def _push_market(self, value: bytes | None) -> None:
        try:
            rec = self.codec.decode(value)
        except (DecodeError, RegistryUnavailable) as exc:
            log.warning("a market-data record was not pushed", extra={"error": str(exc)})
            return
        kind = MARKET_KINDS.get(type(rec))
        if kind is None:
            return
        symbol = rec.symbol  # type: ignore[attr-defined]
        frame = json.dumps({"stream": "market", "type": kind, "symbol": symbol,
                            "data": rec.model_dump(mode="json")})
        for conn in list(self.market_subscribers.get(symbol, ())):
            if isinstance(rec, r.BookUpdate) and rec.sequence <= conn.markets.get(symbol, 0):
                continue  # already in the snapshot the client got
            msg = conn.market_message(rec, frame)
            if msg is not None and not conn.push(msg):
                await self._drop_slow(conn)

    def subscribe_market(self, conn: Connection, symbol: str) -> dict[str, Any]:
        """Subscribe to a symbol: the depth snapshot now, then updates after its sequence number."""
        if self.instruments.get(symbol) is None:
            raise ApiError(40010, f"unknown symbol {symbol}", {"field": "symbol"})
        snapshot = self.depth.get(symbol)
        conn.markets[symbol] = snapshot.sequence if snapshot is not None else 0
        self.market_subscribers.setdefault(symbol, set()).add(conn)
        return {
            "stream": "market",
            "symbol": symbol,
            "subscribed": True,
            "snapshot": snapshot.model_dump(mode="json") if snapshot is not None else None,
        }

    async def _drop_slow(self, conn: Connection) -> None:
        self._forget(conn)
        conn.queue = asyncio.Queue()  # what was queued is dropped with the client
        await conn.ws.send_str(
            json.dumps(
                {
                    "error": {
                        "code": 50301,
                        "message": "send queue full: too slow, disconnecting",
                        "details": {},
                    }
                }
            )
        )
        await conn.ws.close(code=1008, message=b"slow consumer")

    def log_in(self, conn: Connection, who: Principal) -> None:
        """The connection is `who`'s from now on (its user stream, if on, gets their records)."""
        self._forget(conn)
        conn.principal = who
        self.connections.setdefault(who.account_id, set()).add(conn)

    def _forget(self, conn: Connection) -> None:
        if conn.principal is not None:
            self.connections.get(conn.principal.account_id, set()).discard(conn)
        for symbol in conn.markets:
            self.market_subscribers.get(symbol, set()).discard(conn)

USER_EVENT_TYPES = {"ExecutionReport": "execution_report"}  # the rest: the record name in snake case


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


PIPELINE_DEPTH = 256  # orders of one connection queued for the broker before its frames wait
ASSIGNMENT_WAIT_TICKS = 600  # 30 s of 50 ms: the topics exist (the gateway reads them) once metadata comes


async def positioned(consumer: AIOKafkaConsumer) -> None:
    """Until the consumer has its partitions and a position in each (its offset reset done)."""
    for _ in range(ASSIGNMENT_WAIT_TICKS):
        if consumer.assignment():
            break
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)

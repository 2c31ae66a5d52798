"""The gateway's WebSocket (JSON-RPC style): `Session` on one connection, `Stream` across reconnects."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp

from orderstream.client.errors import ApiCallError

log = logging.getLogger(__name__)


@dataclass
class Session:
    """JSON-RPC over one WebSocket: `call` waits for its own answer; stream events go to `events`.
    Someone must run `read()` (see `reading()`)."""

    ws: aiohttp.ClientWebSocketResponse
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    closed: str | None = None

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """The result of `method`; ApiCallError with the API's code when it answers an error,
        ConnectionError when the connection ends first."""
        if self.closed is not None:
            raise ConnectionError(self.closed)
        rid = f"r{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        await self.ws.send_str(json.dumps({"id": rid, "method": method, "params": params or {}}, default=str))
        try:
            frame = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)
        if "error" in frame:
            raise ApiCallError(frame["error"])
        return frame["result"]

    async def read(self) -> None:
        """Answers to their calls and the rest to `events`, until the connection ends."""
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data, parse_float=Decimal)
            fut = self._pending.get(str(frame.get("id"))) if "id" in frame else None
            if fut is not None and not fut.done():
                fut.set_result(frame)
            else:
                self.events.put_nowait(frame)
        self.closed = f"closed ({self.ws.close_code})"
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(self.closed))

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Session]:
        """The session with its reader running."""
        reader = asyncio.get_running_loop().create_task(self.read())
        try:
            yield self
        finally:
            reader.cancel()


class Stream:
    """A logged-in WebSocket that stays: after a drop it connects again (backing off from `retry_s` to
    `max_retry_s`), logs in and subscribes again to what it was subscribed to.

    Events of every connection come in order on `events`. After a reconnect it first queues
    `{"stream": "client", "type": "reconnected"}` and then, per subscription, `{"stream": "client",
    "type": "resubscribed", "result": <the subscribe answer>}` (a market one carries the new depth
    snapshot): what was pushed while it was away is not sent again, so rebuild from those.
    A `call` while it is away waits for the connection; one cut off raises ConnectionError (placing
    the order again with its client_order_id is safe: a repeat is never a second order).
    """

    def __init__(
        self, http: aiohttp.ClientSession, url: str, login: Callable[[], dict[str, Any]],
        retry_s: float = 0.5, max_retry_s: float = 10.0,
    ) -> None:
        self.http, self.url, self.login = http, url, login
        self.retry_s, self.max_retry_s = retry_s, max_retry_s
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.subscriptions: dict[tuple[str, str | None], dict[str, Any]] = {}
        self.session: Session | None = None
        self.account_id: str | None = None
        self.reconnects = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Connect and log in (an ApiCallError when the key is refused), then keep the connection."""
        await self._connect()
        self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _connect(self) -> list[Any]:
        ws = await self.http.ws_connect(self.url)
        session = Session(ws, self.events)
        reader = asyncio.get_running_loop().create_task(session.read())
        try:
            who = await session.call("auth.login", self.login()["params"])
            results = [await session.call("subscribe", params) for params in self.subscriptions.values()]
        except BaseException:
            reader.cancel()
            await ws.close()
            raise
        self.account_id = who["account_id"]
        self.session, self._ws, self._reader = session, ws, reader
        self._connected.set()
        return results

    async def _keep(self) -> None:
        while True:
            assert self._reader is not None
            await asyncio.wait([self._reader])
            self._connected.clear()
            if self._closing:
                return
            delay = self.retry_s
            while True:
                try:
                    results = await self._connect()
                    break
                except (aiohttp.ClientError, ConnectionError, TimeoutError, ApiCallError) as exc:
                    log.warning("gateway connection failed; trying again", extra={"error": repr(exc)})
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_retry_s)
            self.reconnects += 1
            self.events.put_nowait({"stream": "client", "type": "reconnected"})
            for result in results:
                self.events.put_nowait({"stream": "client", "type": "resubscribed", "result": result})

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """`method`'s result, on the current connection (waiting for one while it is away)."""
        await asyncio.wait_for(self._connected.wait(), timeout)
        assert self.session is not None
        return await self.session.call(method, params, timeout)

    async def subscribe_user(self) -> Any:
        """The caller's execution reports, balance changes and order-list/basket/algo/index events."""
        return await self._subscribe({"stream": "user"})

    async def subscribe_market(self, symbol: str) -> Any:
        """A symbol's book updates, trades, ticker and candles; the answer carries its depth snapshot."""
        return await self._subscribe({"stream": "market", "symbol": symbol})

    async def unsubscribe(self, stream: str, symbol: str | None = None) -> Any:
        params = {"stream": stream, **({"symbol": symbol} if symbol is not None else {})}
        self.subscriptions.pop((stream, symbol), None)
        return await self.call("unsubscribe", params)

    async def _subscribe(self, params: dict[str, Any]) -> Any:
        result = await self.call("subscribe", params)
        self.subscriptions[(params["stream"], params.get("symbol"))] = params
        return result

    async def next_event(self, timeout: float | None = None) -> dict[str, Any]:
        """The next pushed frame (`{"stream": "user", "type": "execution_report", "data": {...}}`, ...)."""
        return await asyncio.wait_for(self.events.get(), timeout)

    async def drop(self) -> None:
        """Close the current connection as a network failure would (it reconnects): for tests and drills."""
        if self._ws is not None:
            await self._ws.close()

    async def close(self) -> None:
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
        if self._reader is not None:
            self._reader.cancel()
        if self._ws is not None:
            await self._ws.close()

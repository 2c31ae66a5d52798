"""A small client of the gateway's public API: signed REST calls and a WebSocket JSON-RPC session.

Used by the demo, by `orderstream up` to seed accounts, and by the tests; it is also the
reference for how a client signs (see README, "Signing and keys").
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
from yarl import URL

from orderstream.gateway.auth import sign


class ApiCallError(Exception):
    """The gateway answered with an error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = int(error.get("code", 0))
        self.details = error.get("details") or {}


@dataclass(frozen=True)
class GatewayClient:
    """One API key at one gateway (`base` like http://127.0.0.1:8080)."""

    base: str
    key: str
    secret: str

    def headers(self, method: str, path: str, body: bytes, ts: int | None = None) -> dict[str, str]:
        stamp = str(ts if ts is not None else int(time.time() * 1000))
        return {
            "X-OS-KEY": self.key,
            "X-OS-TIMESTAMP": stamp,
            "X-OS-SIGNATURE": sign(self.secret, stamp, method, path, body),
            "Content-Type": "application/json",
        }

    async def call(
        self, http: aiohttp.ClientSession, method: str, path: str, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Mapping[str, str], Any]:
        """One signed REST request (the signature covers the path with its query as sent, percent-encoded):
        status, headers, JSON."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        url = URL(self.base + path)
        async with http.request(
            method, url, data=data, headers=self.headers(method, url.raw_path_qs, data)
        ) as resp:
            return resp.status, resp.headers.copy(), await resp.json()

    async def ok(self, http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
        """A REST request that must succeed; ApiCallError otherwise."""
        status, _, answer = await self.call(http, method, path, body)
        if status != 200:
            raise ApiCallError(answer.get("error", {"code": status, "message": str(answer)}))
        return answer

    def login_frame(self, rid: str = "login") -> dict[str, Any]:
        stamp = str(int(time.time() * 1000))
        return {
            "id": rid,
            "method": "auth.login",
            "params": {
                "key": self.key,
                "timestamp": stamp,
                "signature": sign(self.secret, stamp, "GET", "/ws", b""),
            },
        }

    async def login(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        """Log a raw WebSocket in; the gateway's answer frame."""
        await ws.send_json(self.login_frame())
        answer: dict[str, Any] = await ws.receive_json(timeout=10)
        return answer

    @asynccontextmanager
    async def session(self, http: aiohttp.ClientSession) -> AsyncIterator[Session]:
        """A logged-in WebSocket session that matches answers to requests and queues stream events."""
        async with http.ws_connect(self.base.replace("http", "ws", 1) + "/ws") as ws:
            s = Session(ws)
            reader = asyncio.get_running_loop().create_task(s.read())
            try:
                await s.call("auth.login", self.login_frame()["params"])
                yield s
            finally:
                reader.cancel()


@dataclass
class Session:
    """JSON-RPC over one WebSocket: `call` waits for its own answer; stream events go to `events`."""

    ws: aiohttp.ClientWebSocketResponse
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    _pending: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    closed: str | None = None

    async def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        rid = f"r{next(self._ids)}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        await self.ws.send_json({"id": rid, "method": method, "params": params or {}})
        try:
            frame = await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)
        if "error" in frame:
            raise ApiCallError(frame["error"])
        return frame["result"]

    async def read(self) -> None:
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

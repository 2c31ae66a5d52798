"""Signed REST calls to the gateway: `GatewayClient` (one API key; the caller's aiohttp session) and
`Client` (its own session, typed answers)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from orderstream.client.errors import ApiCallError
from orderstream.client.models import ApiKey, Balance, CommandSent, Order, OrderPlaced, OrdersPage, Requested
from orderstream.client.ws import Session, Stream
from orderstream.common.signing import sign


@dataclass(frozen=True)
class GatewayClient:
    """One API key at one gateway (`base` like http://127.0.0.1:8080); each call takes the aiohttp session."""

    base: str
    key: str
    secret: str

    def headers(self, method: str, path: str, body: bytes, ts: int | None = None) -> dict[str, str]:
        """The signed headers of a request (`path` with its query, as sent)."""
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
        data = raw if raw is not None else (b"" if body is None else json.dumps(body, default=str).encode())
        url = URL(self.base + path)
        async with http.request(
            method, url, data=data, headers=self.headers(method, url.raw_path_qs, data)
        ) as resp:
            return resp.status, resp.headers.copy(), await resp.json()

    async def ok(self, http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
        """A REST request that must succeed; ApiCallError (with the API's code) otherwise."""
        status, _, answer = await self.call(http, method, path, body)
        if status != 200:
            error = answer.get("error") if isinstance(answer, dict) else None
            raise ApiCallError(error or {"code": status, "message": str(answer)}, status)
        return answer

    def login_frame(self, rid: str = "login") -> dict[str, Any]:
        """The WebSocket's `auth.login` request: the key signs `GET /ws` with an empty body."""
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

    def ws_url(self) -> str:
        return self.base.replace("http", "ws", 1) + "/ws"

    async def login(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        """Log a raw WebSocket in; the gateway's answer frame."""
        await ws.send_json(self.login_frame())
        answer: dict[str, Any] = await ws.receive_json(timeout=10)
        return answer

    @asynccontextmanager
    async def session(self, http: aiohttp.ClientSession) -> AsyncIterator[Session]:
        """A logged-in WebSocket session that matches answers to requests and queues stream events
        (no reconnect: see `Client.stream` for one that stays)."""
        async with http.ws_connect(self.ws_url()) as ws, Session(ws).reading() as s:
            await s.call("auth.login", self.login_frame()["params"])
            yield s


class Client:
    """The gateway's API for one key, typed: REST calls on its own aiohttp session, `stream()` for a
    WebSocket that reconnects. Use it as an async context manager (the session closes on exit)."""

    def __init__(self, base: str, key: str, secret: str) -> None:
        self.api = GatewayClient(base.rstrip("/"), key, secret)
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self.http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any REST operation (`path` like /api/v1/oco): its JSON answer, or ApiCallError."""
        if self.http is None:
            raise RuntimeError("use the Client as `async with Client(...) as client:`")
        return await self.api.ok(self.http, method, path, body)

    async def place_order(self, **fields: Any) -> OrderPlaced:
        """POST /api/v1/orders (order.place): client_order_id, symbol, side, quantity, price, ... as the
        API documents them; Decimals are sent as strings."""
        return OrderPlaced.model_validate(await self.request("POST", "/api/v1/orders", fields))

    async def cancel_order(self, order_id: str) -> Requested:
        return Requested.model_validate(await self.request("DELETE", order_path(order_id)))

    async def replace_order(
        self, order_id: str, quantity: Decimal | None = None, price: Decimal | None = None
    ) -> Requested:
        """A new total quantity and/or limit price."""
        body = {k: v for k, v in (("quantity", quantity), ("price", price)) if v is not None}
        return Requested.model_validate(await self.request("PATCH", order_path(order_id), body))

    async def get_order(self, order_id: str) -> Order:
        return Order.model_validate(await self.request("GET", order_path(order_id)))

    async def open_orders(self, limit: int | None = None, after: str | None = None) -> OrdersPage:
        query = {"limit": limit, "after": after}
        return OrdersPage.model_validate(await self.request("GET", with_query("/api/v1/orders", query)))

    async def history(
        self, symbol: str | None = None, status: str | None = None, limit: int | None = None,
        before: str | None = None,
    ) -> OrdersPage:
        """The account's orders by last change, newest first; pass a page's `next` as `before`."""
        query = {"symbol": symbol, "status": status, "limit": limit, "before": before}
        return OrdersPage.model_validate(await self.request("GET", with_query("/api/v1/history", query)))

    async def balances(self) -> dict[str, Balance]:
        """Free and held per asset, as the read model has them."""
        answer = await self.request("GET", "/api/v1/balances")
        return {asset: Balance.model_validate(b) for asset, b in answer["balances"].items()}

    async def create_account(self, account_id: str, permissions: list[str] | None = None) -> ApiKey:
        """An account and its API key (needs an admin key)."""
        body: dict[str, Any] = {"account_id": account_id}
        if permissions is not None:
            body["permissions"] = permissions
        return ApiKey.model_validate(await self.request("POST", "/api/v1/admin/accounts", body))

    async def deposit(self, account_id: str, asset: str, amount: Decimal) -> CommandSent:
        """Credit an account (needs an admin key); Deposited comes on its user stream."""
        body = {"account_id": account_id, "asset": asset, "amount": amount}
        return CommandSent.model_validate(await self.request("POST", "/api/v1/admin/deposits", body))

    @asynccontextmanager
    async def stream(self, retry_s: float = 0.5, max_retry_s: float = 10.0) -> AsyncIterator[Stream]:
        """A logged-in WebSocket that reconnects after a drop and subscribes again (see `Stream`)."""
        if self.http is None:
            raise RuntimeError("use the Client as `async with Client(...) as client:`")
        stream = Stream(self.http, self.api.ws_url(), self.api.login_frame, retry_s, max_retry_s)
        await stream.start()
        try:
            yield stream
        finally:
            await stream.close()


def order_path(order_id: str) -> str:
    return "/api/v1/orders/" + quote(order_id, safe="/")


def with_query(path: str, query: dict[str, Any]) -> str:
    given = {k: v for k, v in query.items() if v is not None}
    return f"{path}?{urlencode(given)}" if given else path

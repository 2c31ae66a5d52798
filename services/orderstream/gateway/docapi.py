"""The OrderGateway protocol: the WebSocket API of the OrderGateway design document (its section 4).

Three endpoints next to /ws, on the gateway's own machinery (keys, order path, rate-limit buckets,
the user-stream and market-data readers):

- `/orders`: `auth.login`, `order.place`, `order.cancel`, `order.replace`;
- `/market-data`: `auth.login`, after which every listed symbol's book is pushed; `subscribe` and
  `unsubscribe` with `{"symbols": [...]}` narrow that to a selection;
- `/user-data`: `auth.login`, after which the user's order updates are pushed.

Amounts are exact both ways: a frame is parsed with every number that has a fraction or an exponent
as a Decimal of its digits (never a float), and amounts go out as JSON numbers written from their
decimal digits (`150`, `0.5`). Requests are answered `{"id", "result"}` or `{"id", "error": {"code",
"message", "details": {"field", "issue"}}}` (the document's section 7.2, with the gateway's codes).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import partial
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from orderstream.common import records as r
from orderstream.gateway.api import CLIENT_ID_PATTERN
from orderstream.gateway.app import Gateway
from orderstream.gateway.auth import Principal
from orderstream.gateway.core import parse
from orderstream.gateway.errors import ApiError
from orderstream.gateway.jsonrpc import (
    PIPELINED,
    WS_METHODS,
    Reply,
    count,
    error_frame,
    method_of,
    pipelined,
    read_frame,
    websocket_endpoint,
)
from orderstream.gateway.ratelimit import SharedBuckets
from orderstream.gateway.rest import failed
from orderstream.gateway.streams import Connection

log = logging.getLogger(__name__)

ORDERS, MARKET_DATA, USER_DATA = "/orders", "/market-data", "/user-data"
# Beyond the document: the gateway's parent orders and quotes, in its own field names (docs/api.md)
PARENTS = ("order.basket", "order.oco", "order.bracket", "order.algo", "order.index")
METHODS = {
    ORDERS: ("auth.login", "order.place", "order.cancel", "order.replace", *PARENTS, "quote.request"),
    MARKET_DATA: ("auth.login", "subscribe", "unsubscribe"),
    USER_DATA: ("auth.login",),
}
DEPTH = 10  # price levels per side in a market-data push
REFRESH_S = 1.0  # how often books are checked against the latest md.depth snapshot
CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
RENAMED = {"type": "order_type"}  # the document's order field names that differ from the gateway's


# -- exact JSON ---------------------------------------------------------------------------


def dumps(value: Any) -> str:
    """JSON text in which a Decimal is a JSON number written from its digits, never through a float."""
    if isinstance(value, Decimal):
        return number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    return json.dumps(value)


def number(d: Decimal) -> str:
    """A finite Decimal as a JSON number: plain digits (`150`, `0.5`, no trailing zeros) for amounts,
    exponent form for a number too large or small to write out (a request id such as 1e999)."""
    if not d.is_finite():
        raise ValueError(f"{d} is no JSON number")
    if not d:
        return "0"
    plain = d.normalize()
    return format(plain, "f") if abs(plain.adjusted()) <= 40 else str(plain)


# -- market data: the book a push shows -------------------------------------------------------


@dataclass
class Book:
    """The visible book of a symbol (md.depth snapshots and md.book updates) and its last trade.

    BookUpdate levels carry absolute quantities, so an update is applied when it is newer than what
    the book is at; a snapshot at least as new replaces it, which also mends a book that missed
    updates (while no OrderGateway client followed the symbol) within one snapshot interval."""

    sequence: int = -1  # of the snapshot or update the levels are at
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    last_trade: r.Trade | None = None
    taken: r.DepthSnapshot | None = None  # the snapshot last compared

    def snapshot(self, s: r.DepthSnapshot | None) -> bool:
        """Take a snapshot at least as new as the levels; True when the levels changed."""
        if s is None or s is self.taken or s.sequence < self.sequence:
            return False
        self.taken = s
        sides: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
        for level in s.levels:
            sides[level.side == r.BookSide.ASK][level.price] = level.quantity
        changed = sides != (self.bids, self.asks)
        (self.bids, self.asks), self.sequence = sides, s.sequence
        return changed

    def apply(self, record: Any) -> bool:
        """A BookUpdate or Trade newer than the book's; True when the book changed."""
        if isinstance(record, r.Trade):
            if self.last_trade is not None and record.sequence <= self.last_trade.sequence:
                return False
            self.last_trade = record
            return True
        if not isinstance(record, r.BookUpdate) or record.sequence <= self.sequence:
            return False
        for level in record.changes:
            side = self.asks if level.side == r.BookSide.ASK else self.bids
            if level.quantity:
                side[level.price] = level.quantity
            else:
                side.pop(level.price, None)
        self.sequence = record.sequence
        return True

    def view(self, symbol: str, depth: int = DEPTH) -> dict[str, Any]:
        """The document's market-data update: best levels first, the last trade, and the tick (the
        symbol's market-data sequence number)."""
        trade = self.last_trade
        return {
            "symbol": symbol,
            "bids": [list(x) for x in heapq.nlargest(depth, self.bids.items())],
            "asks": [list(x) for x in heapq.nsmallest(depth, self.asks.items())],
            "last_trade": None
            if trade is None
            else {"price": trade.price, "quantity": trade.quantity, "timestamp": trade.ts_event // 1_000_000},
            "tick": max(self.sequence, trade.sequence if trade else 0, 0),
        }


def order_update(report: r.ExecutionReport) -> dict[str, Any]:
    """The document's order status update, from an execution report."""
    return {
        "stream": "user_data",
        "data": {
            "order_id": report.order_id,
            "client_order_id": report.client_order_id,
            "symbol": report.symbol,
            "status": report.status.value,
            "filled_quantity": report.filled_quantity,
            "average_price": report.average_price,
            "timestamp": report.ts_event // 1_000_000,
            "reason": report.reason,
        },
    }


def parent_update(event: r.AlgoOrderUpdated | r.IndexOrderUpdated) -> dict[str, Any]:
    """A TWAP/VWAP or index order's progress in the shape of the document's order update (its fields
    first), with what the parent adds: `kind`, and its own figures."""
    data: dict[str, Any] = {
        "order_id": event.order_id,
        "client_order_id": event.client_order_id,
        "status": str(event.status),  # a StrEnum's str is its value
        "timestamp": event.ts_event // 1_000_000,
        "reason": event.reason,
    }
    if isinstance(event, r.AlgoOrderUpdated):
        data |= {"kind": str(event.algo), "symbol": event.symbol, "filled_quantity": event.filled_quantity,
                 "average_price": event.average_price, "quantity": event.quantity,
                 "window_twap": event.window_twap, "window_vwap": event.window_vwap}
    else:
        data |= {"kind": "INDEX", "units": event.units, "asset": event.asset,
                 "collateral_amount": event.collateral_amount, "spent": event.spent, "left": event.left}
    return {"stream": "user_data", "data": data}


class Bucket:
    """A token bucket in this process: `rate` tokens a second, at most `rate` (at least 1) at once."""

    def __init__(self, rate: float) -> None:
        self.rate, self.size = rate, max(1.0, rate)
        self.tokens, self.at = self.size, time.monotonic()

    def take(self) -> float:
        """Take a token: 0 when taken, else the seconds until one is there."""
        now = time.monotonic()
        self.tokens = min(self.size, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


# -- requests ------------------------------------------------------------------------------------


class Symbols(BaseModel):
    """subscribe / unsubscribe on /market-data."""

    model_config = ConfigDict(extra="forbid")

    symbols: list[str] = Field(min_length=1, max_length=500)


class DocConnection(Connection):
    """A client of one OrderGateway endpoint: order updates in the document's shape on /user-data, and
    on /market-data each followed symbol's book whenever it changed, the newest one when pushes wait
    for the user's market-data rate."""

    def __init__(self, ws: web.WebSocketResponse, limit: int, api: OrderGateway, endpoint: str) -> None:
        super().__init__(ws, limit)
        self.api, self.endpoint = api, endpoint
        self.dirty: dict[str, None] = {}  # symbols whose book changed since the last push, in order
        self.wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.flusher = loop.create_task(self._flush()) if endpoint == MARKET_DATA else None

    def user_message(self, event: Any, frame: str) -> str | None:
        if isinstance(event, r.ExecutionReport):
            return dumps(order_update(event))
        if isinstance(event, r.AlgoOrderUpdated | r.IndexOrderUpdated):
            return dumps(parent_update(event))
        return None

    def market_message(self, record: Any, frame: str) -> str | None:
        self.api.market(record)
        return None

    def changed(self, symbol: str) -> None:
        self.dirty[symbol] = None
        self.wake.set()

    def close(self) -> None:
        super().close()
        self.api.of_all.discard(self)
        if self.flusher is not None:
            self.flusher.cancel()

    async def _flush(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.dirty and self.principal is not None:
                wait = self.api.market_bucket(self.principal, "push").take()
                if wait:
                    await asyncio.sleep(wait)
                    continue
                symbol = next(iter(self.dirty))
                del self.dirty[symbol]
                frame = {"stream": "market_data", "data": self.api.book(symbol).view(symbol)}
                if not self.push(dumps(frame)):
                    await self.api.gw._drop_slow(self)
                    return


class OrderGateway:
    """The OrderGateway protocol of one gateway."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        s = gw.settings
        self.order_buckets = SharedBuckets(
            gw.order_db["gateway_rate_limits"], s.og_orders_per_s, s.og_orders_burst, s.orders_lease
        )
        gw.swept.append(self.order_buckets)
        self.market_buckets: dict[tuple[str, str], Bucket] = {}
        self.books: dict[str, Book] = {}
        self.of_all: set[DocConnection] = set()  # the connections that follow every listed symbol
        self.rate_limits = {
            "orders_per_second": _plain(s.og_orders_per_s),
            "market_data_per_second": _plain(s.og_market_data_per_s),
            "burst_limit": s.og_orders_burst,
        }

    def connection(self, endpoint: str) -> Callable[[web.WebSocketResponse, int], Connection]:
        return partial(DocConnection, api=self, endpoint=endpoint)

    # -- market data ---------------------------------------------------------------------------

    def book(self, symbol: str) -> Book:
        """The symbol's book, brought up to the latest md.depth snapshot."""
        book = self.books.setdefault(symbol, Book())
        book.snapshot(self.gw.depth.get(symbol))
        return book

    def market(self, record: Any) -> None:
        """A market-data record: into its symbol's book (once, however many clients follow it)."""
        symbol = getattr(record, "symbol", None)
        if isinstance(symbol, str) and symbol in self.books and self.books[symbol].apply(record):
            self._changed(symbol)

    def _changed(self, symbol: str) -> None:
        for conn in self.gw.market_subscribers.get(symbol, ()):
            if isinstance(conn, DocConnection):
                conn.changed(symbol)

    def market_bucket(self, who: Principal, kind: str) -> Bucket:
        """The user's bucket of market-data pushes or of requests on /market-data (one each)."""
        key = (who.account_id, kind)
        bucket = self.market_buckets.get(key)
        if bucket is None:
            bucket = self.market_buckets[key] = Bucket(self.gw.settings.og_market_data_per_s)
        return bucket

    def follow(self, conn: DocConnection, symbol: str) -> None:
        """Push the symbol's book to the connection now and whenever it changes."""
        if symbol not in conn.markets:
            conn.markets[symbol] = 0  # every update goes to the book, whatever the snapshot's sequence
            self.gw.market_subscribers.setdefault(symbol, set()).add(conn)
            self.book(symbol)
            conn.changed(symbol)

    def unfollow(self, conn: DocConnection, symbol: str) -> None:
        conn.markets.pop(symbol, None)
        conn.dirty.pop(symbol, None)
        self.gw.market_subscribers.get(symbol, set()).discard(conn)

    def listed(self) -> list[str]:
        return sorted(s for s, i in self.gw.instruments.latest.items() if i.enabled)

    async def start(self, _: web.Application) -> None:
        self.refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def stop(self, _: web.Application) -> None:
        self.refresher.cancel()

    async def _refresh(self) -> None:
        """Each second: follow newly listed symbols for the clients that follow all, and take newer
        md.depth snapshots into the books (their clients get the book if it changed)."""
        while True:
            await asyncio.sleep(REFRESH_S)
            try:
                listed = self.listed()
                for conn in list(self.of_all):
                    for symbol in listed:
                        self.follow(conn, symbol)
                for symbol, book in list(self.books.items()):
                    if book.snapshot(self.gw.depth.get(symbol)):
                        self._changed(symbol)
            except Exception:  # a bug: logged loudly, and the next round tries again
                log.exception("market-data refresh failed")

    # -- requests ------------------------------------------------------------------------------

    async def answer(self, gw: Gateway, conn: DocConnection, text: str) -> Reply | Awaitable[Reply]:
        """A frame's answer, as JSON text; an order's is awaited until the order is on the broker."""
        rid, method, request_id = None, "(unknown)", uuid.uuid4().hex
        try:
            frame = read_frame(gw, text, exact=True)
            rid, params = frame.get("id"), frame.get("params", {})
            method = method_of(frame)
            known = METHODS[conn.endpoint]
            if method not in known:
                raise ApiError(
                    40003,
                    f"unknown method {method} on {conn.endpoint}",
                    {"field": "method", "issue": f"not one of {', '.join(known)}", "known": list(known)},
                )
            if not isinstance(params, dict):
                raise ApiError(40001, "invalid params: must be an object",
                               {"field": "params", "issue": "not an object"})
            if method == "auth.login":
                result = await self.login(conn, params)
            elif conn.principal is None:
                raise ApiError(40100, "log in first (auth.login)", status=401)
            elif method == "order.place":
                return await self.place(conn.principal, rid, params, request_id)
            elif method in PARENTS:
                return await self.place_parent(conn.principal, rid, method, params, request_id)
            elif method == "quote.request":
                result = await WS_METHODS[method](gw, conn.principal, params, request_id)
            elif method in ("order.cancel", "order.replace"):
                result = await self.change(conn.principal, method, params, request_id)
            else:
                result = self.subscription(conn, conn.principal, method, params)
            count(method, 0)
            return dumps({"id": rid, "result": result})
        except ApiError as e:
            return dumps(error_frame(rid, method, e))
        except Exception as exc:  # the client hears what failed; the connection stays
            return dumps(error_frame(rid, method, failed(method, exc, request_id)))

    async def login(self, conn: DocConnection, params: dict[str, Any]) -> dict[str, Any]:
        """Log in with the API secret itself (where the gateway allows it: only behind TLS) or signed:
        `timestamp` (ms) and `signature` = hex HMAC-SHA256(secret, timestamp + "GET" + endpoint path)."""
        key = params.get("api_key")
        if "signature" in params or "timestamp" in params:
            who = await self.gw.verifier.verify(
                key, str(params.get("timestamp", "")), params.get("signature"), "GET", conn.endpoint, b""
            )
        elif "api_secret" not in params:
            raise ApiError(
                40100,
                "missing credentials: api_key with api_secret, or api_key, timestamp and signature",
                {"field": "api_secret", "issue": "required"},
                status=401,
            )
        elif not self.gw.settings.plain_login:
            raise ApiError(
                40105,
                "login with the API secret is off on this gateway: sign the login instead (api_key, "
                'timestamp in ms, signature = hex HMAC-SHA256(secret, timestamp + "GET" + '
                f'"{conn.endpoint}"))',
                {"field": "api_secret", "issue": "plain-secret login disabled"},
                status=401,
            )
        else:
            who = await self.gw.verifier.verify_secret(key, params.get("api_secret"))
        for symbol in list(conn.markets):
            self.unfollow(conn, symbol)
        self.gw.log_in(conn, who)
        conn.user_stream = conn.endpoint == USER_DATA
        if conn.endpoint == MARKET_DATA:
            await self.gw.instruments_ready()
            self.of_all.add(conn)
            for symbol in self.listed():
                self.follow(conn, symbol)
        return {
            "authenticated": True,
            "user_id": who.account_id,
            "permissions": sorted(who.permissions | {"market_data"}),
            "rate_limits": self.rate_limits,
        }

    async def place(
        self, who: Principal, rid: Any, params: dict[str, Any], request_id: str
    ) -> Awaitable[Reply]:
        """Validate and queue an order (the gateway's order path); answered once it is on the broker."""
        for name in RENAMED.values():  # the gateway's own name of a field is unknown here
            if name in params:
                raise ApiError(40001, f"invalid {name}: Extra inputs are not permitted",
                               {"field": name, "issue": "Extra inputs are not permitted"})
        fields = {RENAMED.get(k, k): v for k, v in params.items()}
        own_account(who, fields)
        if fields.get("order_type", "LIMIT") == "LIMIT" and "price" not in fields:
            raise ApiError(40001, "invalid price: required for a LIMIT order",
                           {"field": "price", "issue": "required for a LIMIT order"})
        fields.setdefault("client_order_id", client_order_id(rid))
        limit = (self.order_buckets, f"user:{who.account_id}")
        try:
            queued = await self.gw.place_pending(who, fields, request_id, limit)
        except ApiError as e:
            raise renamed(e) from None
        return self.accepted(pipelined(rid, "order.place", request_id, queued))

    async def place_parent(
        self, who: Principal, rid: Any, method: str, params: dict[str, Any], request_id: str
    ) -> Awaitable[Reply]:
        """A basket, order list, TWAP/VWAP or index order in the gateway's own fields; answered like
        order.place (its child orders' reports come on /user-data)."""
        fields = dict(params)
        own_account(who, fields)
        fields.setdefault("client_order_id", client_order_id(rid))
        queued = await PIPELINED[method](self.gw, who, fields, request_id)
        return self.accepted(pipelined(rid, method, request_id, queued))

    @staticmethod
    def accepted(pending: Awaitable[dict[str, Any]]) -> Awaitable[Reply]:
        """The document's answer to an order once it is on the broker: ACCEPTED with its ids."""

        async def answer() -> Reply:
            frame = await pending
            if "result" in frame:
                placed = frame["result"]
                frame["result"] = {
                    "order_id": placed["order_id"],
                    "status": "ACCEPTED",
                    "timestamp": time.time_ns() // 1_000_000,
                    "client_order_id": placed["client_order_id"],
                    "duplicate": placed["duplicate"],
                }
            return dumps(frame)

        return answer()

    async def change(
        self, who: Principal, method: str, params: dict[str, Any], request_id: str
    ) -> dict[str, Any]:
        """order.cancel or order.replace: requested once on the broker; the outcome comes on /user-data."""
        fields = dict(params)
        own_account(who, fields)
        if method == "order.cancel":
            answer = await self.gw.cancel(who, fields, request_id)
            status = "CANCEL_REQUESTED"
        else:
            answer = await self.gw.replace(who, fields, request_id)
            status = "REPLACE_REQUESTED"
        return {"order_id": answer["order_id"], "status": status, "timestamp": time.time_ns() // 1_000_000}

    def subscription(
        self, conn: DocConnection, who: Principal, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """subscribe: follow these symbols (only these, when the connection followed all); unsubscribe:
        stop following them. The user's requests here are limited to the market-data rate too."""
        wait = self.market_bucket(who, "request").take()
        if wait:
            raise ApiError(
                42902,
                "market-data rate limit reached (market_data_per_second)",
                {"retry_after_s": round(wait, 3),
                 "market_data_per_second": self.rate_limits["market_data_per_second"]},
                status=429,
            )
        symbols = parse(Symbols, params).symbols
        for i, symbol in enumerate(symbols):
            instrument = self.gw.instruments.get(symbol)
            if instrument is None or not instrument.enabled:
                raise ApiError(
                    40010, f"unknown symbol {symbol}", {"field": f"symbols.{i}", "issue": "unknown symbol"}
                )
        if conn in self.of_all:
            self.of_all.discard(conn)
            if method == "subscribe":
                for symbol in list(conn.markets):
                    self.unfollow(conn, symbol)
        for symbol in symbols:
            if method == "subscribe":
                self.follow(conn, symbol)
            else:
                self.unfollow(conn, symbol)
        return {"symbols": sorted(conn.markets)}


def own_account(who: Principal, fields: dict[str, Any]) -> None:
    """The document's `account_id`, if given, must be the key's account (40301); it is dropped."""
    if "account_id" in fields and fields.pop("account_id") != who.account_id:
        raise ApiError(
            40301,
            "account_id is not the account of this API key",
            {"field": "account_id", "issue": "not this key's account"},
            status=403,
        )


def client_order_id(rid: Any) -> str:
    """The client order id of an order sent without one: its request id keys it, so the same request
    sent again is the same order. Without an id, a new one (no repeat can be recognised)."""
    if rid is None:
        return f"og-{uuid.uuid4().hex}"
    if isinstance(rid, str) and CLIENT_ID.fullmatch(readable := f"id:{rid}") and len(readable) <= 64:
        return readable
    return "idh:" + hashlib.sha256(dumps(rid).encode(errors="surrogatepass")).hexdigest()[:40]


def renamed(error: ApiError) -> ApiError:
    """The error naming the document's field names (`type`, not `order_type`)."""
    back = {v: k for k, v in RENAMED.items()}
    for entry in [error.details, *error.details.get("errors", [])]:
        name = entry.get("field")
        if isinstance(name, str) and name in back:
            entry["field"] = back[name]
            error.message = error.message.replace(name, back[name], 1)
    return error


def _plain(x: float) -> int | Decimal:
    return int(x) if x.is_integer() else Decimal(str(x))


def register(app: web.Application, gw: Gateway) -> None:
    """The OrderGateway protocol's endpoints on the gateway's application."""
    api = OrderGateway(gw)
    app.on_startup.append(api.start)
    app.on_cleanup.append(api.stop)
    for endpoint in METHODS:
        app.router.add_get(endpoint, websocket_endpoint(api.answer, api.connection(endpoint)))

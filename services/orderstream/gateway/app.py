"""The gateway: the public REST and WebSocket API in front of the topics.

REST under /api/v1 (signed requests), one WebSocket endpoint /ws (JSON-RPC
style, authenticated once per connection). Orders become SubmitOrder /
CancelOrder records on order.commands (keyed by account, the request id in the
headers); deposits become Deposit records on collateral.commands. Every
execution report is read from execution.reports and pushed to its owner's
connections only. Accounts, keys and the client-order-id index are the
gateway's own MongoDB collections.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import logging.config
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

from aiohttp import WSMsgType, web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from cryptography.fernet import Fernet
from motor.motor_asyncio import AsyncIOMotorClient
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from pydantic import BaseModel, ValidationError
from pymongo.errors import PyMongoError

from orderstream.common import records as r
from orderstream.common.codec import AvroCodec, DecodeError, RegistryUnavailable, schema_ids
from orderstream.common.history import balances, open_orders, order_history
from orderstream.common.index import Pricing, fit
from orderstream.common.logs import logging_config
from orderstream.common.mirror import Mirror
from orderstream.common.records import ALL_RECORDS
from orderstream.gateway import api, payload, quotes
from orderstream.gateway.auth import Keys, Principal, Replays, Verifier
from orderstream.gateway.errors import ApiError, validation_error
from orderstream.gateway.fixentry import FixEntry
from orderstream.gateway.inflight import InFlight
from orderstream.gateway.ratelimit import SharedBuckets
from orderstream.gateway.settings import GatewaySettings
from orderstream.gateway.submitter import Item, Submitter

log = logging.getLogger(__name__)
ACCESS = logging.getLogger("orderstream.gateway.access")

REQUESTS = Counter("orderstream_gateway_requests", "API requests", ["method", "code"])


F = TypeVar("F", bound=Callable[..., Awaitable[dict[str, Any]]])
Limit = tuple[SharedBuckets, str]  # a rate-limit bucket set and the key to take a token of


def answers(op: str) -> Callable[[F], F]:
    """Check what an operation answers against its documented model (api.RESPONSES) before it is sent."""
    model = api.RESPONSES[op]

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def checked(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return model.model_validate(await fn(*args, **kwargs)).model_dump(mode="json")

        return cast(F, checked)

    return wrap


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


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.codec = AvroCodec(ALL_RECORDS, schema_ids(settings.schema_registry_url))
        self.db: Any = AsyncIOMotorClient(settings.mongo_url, tz_aware=True)[settings.mongo_database]
        self.keys = Keys(self.db, self._fernet_key())
        self.verifier = Verifier(self.keys, settings.recv_window_ms, Replays(self.db["gateway_signatures"]))
        self.buckets = SharedBuckets(self.db["gateway_rate_limits"], settings.orders_per_s,
                                     settings.orders_burst, settings.orders_lease)
        self.swept = [self.buckets]  # every SharedBuckets whose old claims the sweep drops
        self.outstanding = InFlight(settings.max_orders_in_flight, settings.in_flight_expire_s)
        self.instruments = Mirror.standalone(settings, self.codec, MIRRORED[0], r.Instrument)
        self.depth = Mirror.standalone(settings, self.codec, MIRRORED[1], r.DepthSnapshot)
        self.market_subscribers: dict[str, set[Connection]] = {}
        self.orders: Any = self.db["gateway_orders"]
        self.producer: AIOKafkaProducer | None = None
        self.submitter = Submitter(self.orders, self.send_batch, self.placed, settings.resend_within_s)
        self.connections: dict[str, set[Connection]] = {}
        # per account: who else hears its execution reports (FIX order entry sessions)
        self.report_sinks: dict[str, set[Callable[[r.ExecutionReport], Awaitable[None]]]] = {}
        self.fix = FixEntry(self)
        self.reports_ready = asyncio.Event()  # the report reader has its positions: nothing after is missed
        self.tasks: list[asyncio.Task[None]] = []

    async def placed(self, order_ids: list[str]) -> set[str]:
        """Which of `order_ids` the order history (the collector's `trader_orders`) has."""
        cursor = self.db["trader_orders"].find({"_id": {"$in": order_ids}}, {"_id": 1})
        return {d["_id"] async for d in cursor}

    def _fernet_key(self) -> bytes:
        if self.settings.secret_key:
            return self.settings.secret_key.encode()
        path = os.path.join(self.settings.data_dir, "gateway", "secret.key")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
        with open(path, "rb") as f:
            return f.read().strip()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self, _: web.Application) -> None:
        await self.orders.create_index([("order_id", 1)], unique=True)
        await self.db["gateway_signatures"].create_index([("expires", 1)])
        if self.settings.admin_key_id and self.settings.admin_secret:
            await self.keys.put_key(
                self.settings.admin_key_id, self.settings.admin_secret, "admin", ["admin", "read", "trade"]
            )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            acks="all",
            linger_ms=self.settings.producer_linger_ms,
        )
        await self.producer.start()
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self.instruments.follow()),
            loop.create_task(self.depth.follow()),
            loop.create_task(self._reports()),
            loop.create_task(self._market_data()),
            loop.create_task(self.submitter.run()),
            loop.create_task(self._forget_signatures()),
        ]
        await self.fix.start()

    async def stop(self, _: web.Application) -> None:
        await self.fix.stop()
        for task in self.tasks:
            task.cancel()
        if self.producer is not None:
            await self.producer.stop()

    async def _forget_signatures(self) -> None:
        """Every gateway drops expired signatures and rate-limit claims now and then (FerretDB has
        no TTL index)."""
        while True:
            await asyncio.sleep(SIGNATURE_SWEEP_S)
            try:
                await self.verifier.forget_expired()
                for buckets in self.swept:
                    await buckets.forget_expired()
                await self.db[QUOTES].delete_many({"expires": {"$lt": time.time_ns()}})
            except PyMongoError as exc:  # the next sweep takes them
                log.warning("expired signatures or claims not dropped", extra={"error": str(exc)})

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

    @answers("orders.open")
    async def open_orders(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("read")
        q = parse(api.OpenOrders, params)
        page = await open_orders(self.db, who.account_id, limit=q.limit, after=q.after)
        return {"orders": [jsonable(d) for d in page.orders], "next": page.next_cursor}

    @answers("orders.history")
    async def history(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("read")
        q = parse(api.History, params)
        page = await order_history(
            self.db, who.account_id, symbol=q.symbol, status=q.status, limit=q.limit, before=q.before
        )
        return {"orders": [jsonable(d) for d in page.orders], "next": page.next_cursor}

    @answers("balances.get")
    async def balances(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        """Free and held per asset: the collector's `balances` documents (newest per-account sequence)."""
        who.require("read")
        return {"balances": await balances(self.db, who.account_id)}

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

    # -- operations (REST and WebSocket) --------------------------------------------

    async def send_batch(self, items: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
        """Send records in order and wait once for the broker's acks of all of them."""
        assert self.producer is not None
        acks = [
            await self.producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in items
        ]
        await asyncio.gather(*acks)

    async def send(self, topic: str, key: str, record: Any, request_id: str) -> None:
        assert topic in WRITES, topic
        assert self.producer is not None
        await self.producer.send_and_wait(
            self.settings.topic(topic),
            self.codec.encode(record),
            key=key.encode(),
            headers=[("x-request-id", request_id.encode())],
        )

    async def place(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_pending(who, params, request_id))

    async def place_pending(
        self, who: Principal, params: dict[str, Any], request_id: str, limit: Limit | None = None
    ) -> Awaitable[dict[str, Any]]:
        """Validate and queue an order now (in request order); the awaitable answers once it is sent.
        `limit`: the bucket and key whose token it takes (default: the API key's)."""
        who.require("trade")
        await self.take_order_token(who, limit)
        o = parse(api.PlaceOrder, params)
        await self.instruments_ready()
        api.check_instrument(o, self.instruments.get(o.symbol))
        return self.submit(who, o.symbol, request_id, r.SubmitOrder, o.model_dump())

    async def place_basket(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_basket_pending(who, params, request_id))

    async def place_basket_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        who.require("trade")
        await self.take_order_token(who)
        b = parse(api.PlaceBasket, params)
        await self.instruments_ready()
        api.check_basket(b, self.instruments)
        legs = [leg.symbol for leg in b.legs]
        return self.submit(who, BASKET, request_id, r.SubmitBasket, b.model_dump(), legs=legs)

    async def place_oco(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_oco_pending(who, params, request_id))

    async def place_oco_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        who.require("trade")
        await self.take_order_token(who)
        o = parse(api.PlaceOco, params)
        await self.instruments_ready()
        fields = api.oco_fields(o, self.instruments.get(o.symbol))
        return self.submit(who, o.symbol, request_id, r.SubmitOrderList, fields, legs=[o.symbol] * 2)

    async def place_bracket(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_bracket_pending(who, params, request_id))

    async def place_bracket_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        who.require("trade")
        await self.take_order_token(who)
        b = parse(api.PlaceBracket, params)
        await self.instruments_ready()
        fields = api.bracket_fields(b, self.instruments.get(b.symbol))
        # the exits (/1, /2) come from the matcher once the entry fills: only the entry is awaited
        legs = [b.symbol] * 3
        return self.submit(who, b.symbol, request_id, r.SubmitOrderList, fields, placed=1, legs=legs)

    async def place_algo(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_algo_pending(who, params, request_id))

    async def place_algo_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        """A TWAP/VWAP parent: SubmitAlgoOrder on order.commands; its progress comes on algo.events."""
        who.require("trade")
        await self.take_order_token(who)
        a = parse(api.PlaceAlgoOrder, params)
        await self.instruments_ready()
        now = time.time_ns()
        api.check_algo(a, self.instruments.get(a.symbol), now)
        start = a.start_at if a.start_at is not None else now
        fields = a.model_dump(exclude={"start_at", "duration_ms"})
        fields |= {"start_at": start, "end_at": start + a.duration_ms * 1_000_000}
        return self.submit(who, a.symbol, request_id, r.SubmitAlgoOrder, fields, algo=a.algo.value)

    @answers("quote.request")
    async def quote(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """What a collateral amount buys of an index now, from the depth snapshots (common/index.py)."""
        who.require("trade")
        q = parse(api.RequestQuote, params)
        await self.instruments_ready()
        legs, asset = quotes.index_legs(q.legs, self.instruments.latest)
        books = quotes.books_of(legs, self.depth)
        asks = {s: a for s, (_, a) in books.items()}
        fitted = fit(legs, q.collateral_amount, asks, self.instruments.latest, Pricing.TAKER)
        quote_id = f"q-{uuid.uuid4().hex[:24]}"
        expires_at = time.time_ns() + quotes.QUOTE_TTL_NS
        answer = quotes.view(quote_id, expires_at, asset, q.collateral_amount, fitted, legs, books)
        best = {s: (str(a[0][0]) if a else None) for s, (_, a) in books.items()}
        await self.db[QUOTES].insert_one({
            "_id": quote_id,
            "account_id": who.account_id,
            "expires": expires_at,
            "legs": [{**x, "best_ask": best[x["symbol"]]} for x in answer["legs"]],
        })
        return answer

    async def place_index(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_index_pending(who, params, request_id))

    async def place_index_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        """An index order by collateral amount; each leg's price cap from the quote or the book and the
        slippage bound (gateway/quotes.py)."""
        who.require("trade")
        await self.take_order_token(who)
        o = parse(api.PlaceIndexOrder, params)
        await self.instruments_ready()
        legs, asset = quotes.index_legs(o.legs, self.instruments.latest)
        quote = None
        if o.quote_id is not None:
            quote = await self.db[QUOTES].find_one({"_id": o.quote_id, "account_id": who.account_id})
            if quote is None or quote["expires"] < time.time_ns():
                raise ApiError(40001, "invalid quote_id: no such quote, or it expired",
                               {"field": "quote_id", "issue": "unknown or expired"})
            if not quotes.same_legs(quote, legs):
                raise ApiError(40001, "invalid quote_id: the quote is of other legs or weights",
                               {"field": "quote_id", "issue": "other legs"})
        caps: dict[str, Decimal | None] = {leg.symbol: None for leg in legs}
        if quote is not None or o.max_slippage is not None:
            refs = quotes.references(quote, legs, quotes.books_of(legs, self.depth))
            slippage = o.max_slippage or Decimal(0)
            caps = {s: quotes.price_cap(ref, slippage, self.instruments.latest[s]) for s, ref in refs.items()}
        fields = {
            "client_order_id": o.client_order_id,
            "asset": asset,
            "collateral_amount": o.collateral_amount,
            "legs": [
                {"symbol": leg.symbol, "weight": leg.weight, "price_cap": caps[leg.symbol]} for leg in legs
            ],
            "quote_id": o.quote_id,
            "max_slippage": o.max_slippage,
        }
        return self.submit(who, INDEX, request_id, r.SubmitIndexOrder, fields, legs=[x.symbol for x in legs])

    @answers("order.index.update")
    async def update_index(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A new collateral amount for an index order: collateral holds an increase, the router takes it."""
        who.require("trade")
        u = parse(api.UpdateIndexOrder, params)
        doc = await self.order_doc(who, u.order_id)
        if doc["symbol"] != INDEX:
            raise ApiError(40905, f"{u.order_id} is not an index order", {"field": "order_id"}, status=409)
        amount = u.collateral_amount
        await self.order_command(who, r.UpdateIndexOrder, doc, request_id, collateral_amount=amount)
        return {"order_id": u.order_id, "update": "requested"}

    async def order_command(
        self,
        who: Principal,
        kind: type[r.CancelOrder | r.ReplaceOrder | r.UpdateIndexOrder],
        doc: dict[str, Any],
        request_id: str,
        **fields: Any,
    ) -> None:
        """A command about the caller's order `doc` (order_doc's) onto order.commands."""
        if kind is not r.UpdateIndexOrder:
            fields["symbol"] = doc["symbol"]
        await self.enqueue(
            "order.commands",
            who.account_id,
            kind(
                command_id=f"gw-{uuid.uuid4().hex}",
                ts_event=time.time_ns(),
                account_id=who.account_id,
                order_id=doc["order_id"],
                client_order_id=doc["client_order_id"],
                **fields,
            ),
            request_id,
        )

    async def take_order_token(self, who: Principal, limit: Limit | None = None) -> None:
        """Refuse a new order while too many of this gateway's orders are out in the order path
        (50302; first, so that a refusal under overload costs neither a token nor validation),
        or over the key's rate limit, or `limit`'s (42901)."""
        if self.outstanding.busy():
            raise ApiError(
                50302,
                f"busy: {self.outstanding.count} orders are in the order path; send it again shortly",
                {"in_flight": self.outstanding.count},
                status=503,
                headers={"Retry-After": "1"},
            )
        buckets, key = limit or (self.buckets, who.key_id)
        retry = await buckets.take(key)
        if retry:
            raise ApiError(
                42901,
                "order rate limit reached",
                {"retry_after_s": retry},
                status=429,
                headers={"Retry-After": str(max(1, round(retry)))},
            )

    async def instruments_ready(self) -> None:
        if not self.instruments.ready.is_set():
            await asyncio.wait_for(self.instruments.wait(), 10)

    def submit(
        self,
        who: Principal,
        symbol: str,
        request_id: str,
        kind: type[r.SubmitOrder | r.SubmitBasket | r.SubmitOrderList | r.SubmitAlgoOrder
                   | r.SubmitIndexOrder],
        fields: dict[str, Any],
        placed: int | None = None,
        **extra: Any,
    ) -> Awaitable[dict[str, Any]]:
        """Queue the command once per (account, client_order_id); a repeat gets the original order id.
        `placed`: how many of its child orders are placed at once (default: every leg)."""
        client_order_id = fields["client_order_id"]
        order_id = f"{symbol}-{uuid.uuid4().hex[:16]}"
        doc = {
            "_id": f"{who.account_id}|{client_order_id}",
            "order_id": order_id,
            "account_id": who.account_id,
            "client_order_id": client_order_id,
            "symbol": symbol,
            "ts": time.time(),
            **extra,
        }
        command = kind(
            command_id=f"gw-{uuid.uuid4().hex}",
            ts_event=time.time_ns(),
            account_id=who.account_id,
            order_id=order_id,
            **fields,
        )
        legs = len(extra["legs"]) if "legs" in extra else 0
        ids = [f"{order_id}/{i}" for i in range(placed or legs)] if legs else [order_id]
        if "algo" in extra or symbol == INDEX:  # its children come later, slice by slice or round by round
            ids = []  # (maybe much later): none is awaited
        self.outstanding.sent(who.account_id, ids)  # before the send: its report may come at once
        sent = self.enqueue("order.commands", who.account_id, command, request_id, doc)

        async def answer() -> dict[str, Any]:
            new = False
            try:
                result = await sent
                new = not result["duplicate"]
            finally:
                if not new:  # not sent, or sent before under the original's order id
                    for i in ids:
                        self.outstanding.reported(who.account_id, i, report=False)
            placed = api.OrderPlaced(
                order_id=result["order_id"], client_order_id=client_order_id, duplicate=result["duplicate"]
            )
            return placed.model_dump(mode="json")

        return answer()

    def enqueue(
        self, topic: str, key: str, record: Any, request_id: str, doc: dict[str, Any] | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """An order command into the group commit (common order with every other order command)."""
        assert topic in WRITES, topic
        return self.submitter.enqueue(
            Item(
                self.settings.topic(topic),
                key.encode(),
                self.codec.encode(record),
                [("x-request-id", request_id.encode())],
                doc,
            )
        )

    async def order_doc(self, who: Principal, order_id: str, *, to_change: bool = False) -> dict[str, Any]:
        """The caller's order; a basket's child `<basket id>/<leg>` is found through its basket, a TWAP/VWAP
        child `<parent id>/<slice>` through its parent."""
        parent_id, _, leg = order_id.partition("/")
        doc: dict[str, Any] | None = self.submitter.known(parent_id)
        if doc is None or doc["account_id"] != who.account_id:
            doc = await self.orders.find_one({"order_id": parent_id, "account_id": who.account_id})
        if doc is not None and leg and doc.get("algo"):
            child = {"order_id": order_id, "client_order_id": f"{doc['client_order_id']}/{leg}", "algo": None}
            doc = {**doc, **child} if leg.isdigit() else None
        elif doc is not None and leg:
            legs = doc.get("legs") or []
            n = int(leg) if leg.isdigit() and legs else -1
            if doc["symbol"] == INDEX and n >= 0:  # an index order's child n is of leg n % legs, any round
                n %= len(legs)
            doc = (
                None
                if n < 0 or n >= len(legs)
                else {
                    **doc,
                    "order_id": order_id,
                    "client_order_id": f"{doc['client_order_id']}/{leg}",
                    "symbol": legs[n],
                }
            )
        if doc is None:  # another account's order looks exactly like a missing one
            raise ApiError(40401, f"no order {order_id}", {"field": "order_id"}, status=404)
        if to_change and doc["symbol"] == BASKET:
            raise ApiError(
                40904,
                "a basket is canceled or replaced leg by leg: use its child order ids <basket id>/<leg>",
                {"field": "order_id"},
                status=409,
            )
        return doc

    @answers("order.cancel")
    async def cancel(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        who.require("trade")
        c = parse(api.CancelOrder, params)
        doc = await self.order_doc(who, c.order_id, to_change=True)
        await self.order_command(who, r.CancelOrder, doc, request_id)
        return {"order_id": c.order_id, "cancel": "requested"}

    @answers("order.replace")
    async def replace(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        who.require("trade")
        c = parse(api.ReplaceOrder, params)
        doc = await self.order_doc(who, c.order_id, to_change=True)
        if doc["symbol"] == INDEX:
            raise ApiError(
                40905,
                "an index order is changed with order.index.update (a new collateral amount)",
                {"field": "order_id"},
                status=409,
            )
        if doc.get("algo") or (doc.get("legs") and doc["order_id"] == c.order_id):
            what = "a TWAP/VWAP parent" if doc.get("algo") else "an order list (OCO, bracket)"
            raise ApiError(40904, f"{what} cannot be replaced; cancel it", {"field": "order_id"}, status=409)
        instrument = self.instruments.get(doc["symbol"])
        if instrument is not None:
            api.check_increments(instrument, c.quantity, price=c.price)
        await self.order_command(who, r.ReplaceOrder, doc, request_id, quantity=c.quantity, price=c.price)
        return {"order_id": c.order_id, "replace": "requested"}

    @answers("order.get")
    async def get(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("read")
        c = parse(api.CancelOrder, params)
        doc = await self.order_doc(who, c.order_id)
        state = await self.db["trader_orders"].find_one({"_id": c.order_id, "account_id": who.account_id})
        return {
            "order_id": c.order_id,
            "client_order_id": doc["client_order_id"],
            "symbol": doc["symbol"],
            "state": jsonable(state) if state else None,
        }

    @answers("admin.account")
    async def create_account(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("admin")
        a = parse(api.CreateAccount, params)
        key_id, secret = await self.keys.create_key(a.account_id, a.permissions)
        return {"account_id": a.account_id, "key_id": key_id, "secret": secret, "permissions": a.permissions}

    @answers("admin.deposit")
    async def deposit(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        command_id, _ = await self.admin_command(who, params, request_id, api.PostDeposit, r.Deposit)
        return {"command_id": command_id}

    @answers("admin.withdraw")
    async def withdraw(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """Accepted here means sent: collateral answers Withdrawn or WithdrawalRejected on the user stream."""
        command_id, _ = await self.admin_command(who, params, request_id, api.PostWithdrawal, r.Withdraw)
        return {"command_id": command_id}

    @answers("admin.kill_switch")
    async def kill_switch(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """Engage or lift a kill switch; the router applies it to new orders (compacted risk.commands)."""
        command_id, k = await self.admin_command(who, params, request_id, api.PostKillSwitch, r.SetKillSwitch)
        return {
            "command_id": command_id,
            "scope": str(k["scope"]),
            "target": k["target"],
            "engaged": k["engaged"],
        }

    async def admin_command(
        self,
        who: Principal,
        params: dict[str, Any],
        request_id: str,
        body: type[BaseModel],
        kind: type[r.Deposit | r.Withdraw | r.SetKillSwitch],
    ) -> tuple[str, dict[str, Any]]:
        """An admin request body (its fields are the command's) sent as that command; its id and fields."""
        who.require("admin")
        fields = parse(body, params).model_dump()
        command_id = f"gw-{uuid.uuid4().hex}"
        command = kind(command_id=command_id, ts_event=time.time_ns(), **fields)
        if isinstance(command, r.SetKillSwitch):
            await self.send("risk.commands", f"{command.scope}:{command.target}", command, request_id)
        else:
            await self.send("collateral.commands", fields["account_id"], command, request_id)
        return command_id, fields


def jsonable(doc: dict[str, Any]) -> dict[str, Any]:
    """A MongoDB document as JSON: times as ISO 8601, without MongoDB's _id (documents carry order_id)."""
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in doc.items() if k != "_id"}


def parse(model: type[BaseModel], params: Any) -> Any:
    if not isinstance(params, dict):
        raise ApiError(
            40001, "invalid (body): must be a JSON object", {"field": "(body)", "issue": "not an object"}
        )
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise validation_error(exc) from None


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


# -- REST -------------------------------------------------------------------------


def rest(
    op: Callable[..., Awaitable[dict[str, Any]]],
    name: str,
    *,
    body: bool,
    path_param: str | None = None,
    query: bool = False,
    with_request_id: bool = True,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The REST handler of operation `name` (its OpenAPI operationId and WebSocket method)."""

    async def handler(request: web.Request) -> web.Response:
        gw = request.app[GATEWAY]
        request_id = request_id_of(request)
        raw = await request.read()
        try:
            who = await gw.verifier.verify(
                request.headers.get("X-OS-KEY"),
                request.headers.get("X-OS-TIMESTAMP"),
                request.headers.get("X-OS-SIGNATURE"),
                request.method,
                request.raw_path,  # the path and query as sent (percent-encoded), as the client signed them
                raw,
            )
            params: Any = {}
            if body:  # an empty body is no object: 40001
                params = payload.loads(raw, gw.settings.max_json_depth, "body") if raw else None
            if path_param and isinstance(params, dict):
                params = {**params, path_param: request.match_info[path_param]}
            if query:
                params = dict(request.query)
            args = (gw, who, params, request_id) if with_request_id else (gw, who, params)
            result = await op(*args)
            REQUESTS.labels(route(request), "0").inc()
            return web.json_response(result, headers={"X-Request-Id": request_id})
        except ApiError as e:
            error = e
        except Exception as exc:  # answered with its documented code, never a bare 500
            error = failed(name, exc, request_id)
        REQUESTS.labels(route(request), str(error.code)).inc()
        log.info(
            "request refused", extra={"request_id": request_id, "code": error.code, "path": request.path}
        )
        return web.json_response(
            {"error": error.body()},
            status=error.status,
            headers={"X-Request-Id": request_id, **error.headers},
        )

    return handler


def request_id_of(request: web.Request) -> str:
    """The client's X-Request-Id if short printable ASCII (it goes into headers and logs), else a new one."""
    given = request.headers.get("X-Request-Id", "")
    return given if 0 < len(given) <= 128 and given.isascii() and given.isprintable() else uuid.uuid4().hex


def failed(op: str, exc: Exception, request_id: str) -> ApiError:
    """An exception of an operation (not an ApiError) as the documented error its client gets, logged with the
    request id: an order not confirmed (50001), MongoDB or Kafka failing (50002), else a bug (50000)."""
    if op in ORDER_OPS:
        error = ApiError(
            50001,
            "the order could not be confirmed; send it again with the same client_order_id "
            "(a repeat is never a second order)",
            status=503,
        )
    elif isinstance(exc, UNAVAILABLE):
        error = ApiError(50002, "MongoDB or Kafka did not answer or refused; try again", status=503)
    else:
        error = ApiError(50000, "internal error; it is logged with the request id", status=500)
    error.details["request_id"] = request_id
    log.error(
        "request failed",
        exc_info=exc,
        extra={"request_id": request_id, "operation": op, "code": error.code, "error": repr(exc)},
    )
    return error


# a failure is 50001: the client sends the order again
ORDER_OPS = frozenset(
    {"order.place", "order.basket", "order.oco", "order.bracket", "order.algo", "order.index"}
)
UNAVAILABLE = (PyMongoError, KafkaError, ConnectionError, TimeoutError)


def route(request: web.Request) -> str:
    """The route's template (`/api/v1/orders/{order_id}`): a bounded label, unlike the path."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "(no route)"


@web.middleware
async def access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One JSON log line per HTTP request (a WebSocket's when it closes), with the request id the command
    carried in its `x-request-id` header; never the signature or a secret."""
    started = time.perf_counter()
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if request.path not in ("/healthz", "/metrics"):
            ACCESS.info(
                "http request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "route": route(request),
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": response.headers.get("X-Request-Id") if response is not None else None,
                    "key": request.headers.get("X-OS-KEY"),
                    "remote": request.remote,
                },
            )


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own refusals (no such route, method not allowed, body too large) in the API's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = HTTP_ERRORS.get(exc.status, (exc.status * 100, exc.reason))
        REQUESTS.labels(route(request), str(code)).inc()
        return web.json_response(
            {"error": ApiError(code, message).body()},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k == "Allow"},
        )


HTTP_ERRORS = {
    404: (40400, "no such route"),
    405: (40500, "method not allowed on this route"),
    413: (41301, "body too large"),
}


# -- WebSocket ----------------------------------------------------------------------


Reply = dict[str, Any] | str  # an answer frame, or its JSON text
Answerer = Callable[[Any, Any, str], Awaitable[Reply | Awaitable[Reply]]]


def websocket_endpoint(
    answer_frame: Answerer, connection: Callable[[web.WebSocketResponse, int], Connection]
) -> Callable[[web.Request], Awaitable[web.WebSocketResponse]]:
    """A WebSocket route: each text frame answered by `answer_frame(gateway, connection, text)`, at once
    or (an awaitable: an order queued for the broker) when it is sent, while later frames are read."""

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        return await serve(request, answer_frame, connection)

    return websocket


async def serve(
    request: web.Request,
    answer_frame: Answerer,
    connection: Callable[[web.WebSocketResponse, int], Connection],
) -> web.WebSocketResponse:
    gw = request.app[GATEWAY]
    ws = web.WebSocketResponse(heartbeat=gw.settings.ws_heartbeat_s, max_msg_size=0)
    await ws.prepare(request)
    conn = connection(ws, gw.settings.ws_send_queue)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    conn.push(error_frame(None, "(unknown)", ApiError(40002, "frames must be JSON text")))
                continue
            reply = await answer_frame(gw, conn, msg.data)
            if isinstance(reply, dict | str):
                if not conn.push(reply):
                    await gw._drop_slow(conn)  # its replies pile up unread: same as a slow stream
            else:  # an order queued for the broker: answered when it is sent, while later frames are read
                await conn.in_flight.acquire()
                task = asyncio.get_running_loop().create_task(deliver(gw, conn, reply))
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
    finally:
        gw._forget(conn)
        conn.close()
    return ws


async def deliver(gw: Gateway, conn: Connection, reply: Awaitable[Reply]) -> None:
    try:
        frame = await reply
    finally:
        conn.in_flight.release()
    if not conn.push(frame):
        await gw._drop_slow(conn)


async def pipelined(
    rid: Any, method: str, request_id: str, pending: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    try:
        frame = {"id": rid, "result": await pending}
        count(method, 0)
        return frame
    except Exception as exc:  # not written: the order was not accepted, and the client hears so
        return error_frame(rid, method, failed(method, exc, request_id))


def count(method: str, code: int) -> None:
    """A WebSocket answer in /metrics, by method (a bounded label: unknown ones are one) and code."""
    REQUESTS.labels(method if method in KNOWN_METHODS else "(unknown)", str(code)).inc()


def error_frame(rid: Any, method: str, e: ApiError) -> dict[str, Any]:
    count(method, e.code)
    return {"id": rid, "error": e.body()}


async def answer(gw: Gateway, conn: Connection, text: str) -> dict[str, Any] | Awaitable[dict[str, Any]]:
    rid, method, request_id = None, "(unknown)", uuid.uuid4().hex
    try:
        frame = read_frame(gw, text)
        rid, params = frame.get("id"), frame.get("params", {})
        method = method_of(frame)
        if method == "auth.login":
            if not isinstance(params, dict):
                raise ApiError(40001, "invalid params: must be an object", {"field": "params"})
            who = await gw.verifier.verify(
                params.get("key"),
                str(params.get("timestamp", "")),
                params.get("signature"),
                "GET",
                "/ws",
                b"",
            )
            gw.log_in(conn, who)
            count(method, 0)
            return {
                "id": rid,
                "result": {"account_id": who.account_id, "permissions": sorted(who.permissions)},
            }
        if method not in KNOWN_METHODS:
            raise ApiError(
                40003, f"unknown method {method}", {"method": method, "known": sorted(KNOWN_METHODS)}
            )
        if conn.principal is None:
            raise ApiError(40100, "log in first (auth.login)", status=401)
        if method in PIPELINED:
            pending = await PIPELINED[method](gw, conn.principal, params, request_id)
            return pipelined(rid, method, request_id, pending)
        if method == "subscribe" or method == "unsubscribe":
            result = subscription(gw, conn, method, params)
        else:
            result = await WS_METHODS[method](gw, conn.principal, params, request_id)
        count(method, 0)
        return {"id": rid, "result": result}
    except ApiError as e:
        return error_frame(rid, method, e)
    except Exception as exc:  # the client hears what failed; the connection stays
        return error_frame(rid, method, failed(method, exc, request_id))


def read_frame(gw: Gateway, text: str, *, exact: bool = False) -> dict[str, Any]:
    """A request frame's JSON object (`exact`: see payload.loads); 41301 when larger than the gateway
    takes, 40002 when not JSON, 40004 when nested too deep, 40001 when not an object."""
    if len(text.encode(errors="replace")) > gw.settings.max_frame_bytes:
        raise ApiError(41301, f"frame larger than {gw.settings.max_frame_bytes} bytes")
    frame = payload.loads(text, gw.settings.max_json_depth, "frame", exact=exact)
    if not isinstance(frame, dict):
        raise ApiError(
            40001, "invalid (frame): must be an object", {"field": "(frame)", "issue": "not an object"}
        )
    return frame


def method_of(frame: dict[str, Any]) -> str:
    if not isinstance(frame.get("method"), str):
        raise ApiError(40001, "invalid method: required", {"field": "method", "issue": "required"})
    method: str = frame["method"]
    return method


def subscription(gw: Gateway, conn: Connection, method: str, params: Any) -> dict[str, Any]:
    """subscribe / unsubscribe: the user stream, or a symbol's market stream."""
    sub = parse(api.Subscription, params)
    if sub.stream == "user":
        conn.user_stream = method == "subscribe"
        return {"stream": "user", "subscribed": conn.user_stream}
    if sub.symbol is None:
        raise ApiError(
            40001,
            "invalid symbol: required for the market stream",
            {"field": "symbol", "issue": "required"},
        )
    if method == "subscribe":
        return gw.subscribe_market(conn, sub.symbol)
    conn.markets.pop(sub.symbol, None)
    gw.market_subscribers.get(sub.symbol, set()).discard(conn)
    return {"stream": "market", "symbol": sub.symbol, "subscribed": False}


def _read(
    op: Callable[[Gateway, Principal, dict[str, Any]], Awaitable[dict[str, Any]]],
) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def call(gw: Gateway, who: Principal, params: dict[str, Any], _request_id: str) -> dict[str, Any]:
        return await op(gw, who, params)

    return call


USER_TOPICS = (
    "execution.reports", "collateral.events", "basket.events", "algo.events", "index.events",
    "execution.positions",
)
MARKET_TOPICS = ("md.book", "md.trades", "md.ticker", "md.candles")
MIRRORED = ("ref.instruments", "md.depth")
BINANCE_READS = ("risk.commands",)  # kill switches: a halted symbol's status (binance.py)
READS = frozenset({*USER_TOPICS, *MARKET_TOPICS, *MIRRORED, *BINANCE_READS})  # checked against the catalog
WRITES = frozenset({"order.commands", "collateral.commands", "risk.commands"})
USER_EVENT_TYPES = {"ExecutionReport": "execution_report"}  # the rest: the record name in snake case


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


ORDER_PATH = "/api/v1/orders/{order_id:[^/]+(?:/[0-9]+)?}"  # a basket's or list's child: <parent id>/<n>
BASKET = "BASKET"  # the symbol of a basket's own order document (its legs carry the real ones)
INDEX = "INDEX"  # likewise, an index order's
QUOTES = "gateway_quotes"  # quotes, for QUOTE_TTL_NS (index orders placed from them read their prices)

WS_METHODS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "order.place": Gateway.place,
    "order.basket": Gateway.place_basket,
    "order.oco": Gateway.place_oco,
    "order.bracket": Gateway.place_bracket,
    "order.algo": Gateway.place_algo,
    "quote.request": Gateway.quote,
    "order.index": Gateway.place_index,
    "order.index.update": Gateway.update_index,
    "order.cancel": Gateway.cancel,
    "order.replace": Gateway.replace,
    "order.get": _read(Gateway.get),
    "orders.open": _read(Gateway.open_orders),
    "orders.history": _read(Gateway.history),
    "balances.get": _read(Gateway.balances),
}
PIPELINED: dict[str, Callable[..., Awaitable[Awaitable[dict[str, Any]]]]] = {
    "order.place": Gateway.place_pending,
    "order.basket": Gateway.place_basket_pending,
    "order.oco": Gateway.place_oco_pending,
    "order.bracket": Gateway.place_bracket_pending,
    "order.algo": Gateway.place_algo_pending,
    "order.index": Gateway.place_index_pending,
}
SIGNATURE_SWEEP_S = 60.0
PIPELINE_DEPTH = 256  # orders of one connection queued for the broker before its frames wait
KNOWN_METHODS = frozenset({"auth.login", "subscribe", "unsubscribe", *WS_METHODS})


# -- app ------------------------------------------------------------------------------


ASSIGNMENT_WAIT_TICKS = 600  # 30 s of 50 ms: the topics exist (the gateway reads them) once metadata comes


def ready(gw: Gateway) -> bool:
    return gw.instruments.ready.is_set() and gw.reports_ready.is_set()


async def positioned(consumer: AIOKafkaConsumer) -> None:
    """Until the consumer has its partitions and a position in each (its offset reset done)."""
    for _ in range(ASSIGNMENT_WAIT_TICKS):
        if consumer.assignment():
            break
        await asyncio.sleep(0.05)
    for tp in consumer.assignment():
        await consumer.position(tp)


async def healthz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return web.json_response(
        {
            "service": "gateway",
            "status": "ok" if ready(gw) else "starting",
            "connections": sum(len(c) for c in gw.connections.values()),
            "instruments": len(gw.instruments.latest),
            "orders_in_flight": gw.outstanding.count,
            "orders_refused_busy": gw.outstanding.refused,
            "orders_in_flight_expired": gw.outstanding.expired,
            "fix_sessions": gw.fix.health(),
        },
        status=200 if ready(gw) else 503,
    )


async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(api.openapi())


def build(settings: GatewaySettings | None = None) -> web.Application:
    """The gateway application, ready to run."""
    gw = Gateway(settings or GatewaySettings())
    app = web.Application(client_max_size=gw.settings.max_frame_bytes, middlewares=[access_log, json_errors])
    app[GATEWAY] = gw
    app.on_startup.append(gw.start)
    app.on_cleanup.append(gw.stop)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_post("/api/v1/orders", rest(Gateway.place, "order.place", body=True))
    app.router.add_post("/api/v1/baskets", rest(Gateway.place_basket, "order.basket", body=True))
    app.router.add_post("/api/v1/oco", rest(Gateway.place_oco, "order.oco", body=True))
    app.router.add_post("/api/v1/brackets", rest(Gateway.place_bracket, "order.bracket", body=True))
    app.router.add_post("/api/v1/algo-orders", rest(Gateway.place_algo, "order.algo", body=True))
    app.router.add_post("/api/v1/quotes", rest(Gateway.quote, "quote.request", body=True))
    app.router.add_post("/api/v1/index-orders", rest(Gateway.place_index, "order.index", body=True))
    app.router.add_patch(
        "/api/v1/index-orders/{order_id}",
        rest(Gateway.update_index, "order.index.update", body=True, path_param="order_id"),
    )
    app.router.add_get(
        ORDER_PATH,
        rest(Gateway.get, "order.get", body=False, path_param="order_id", with_request_id=False),
    )
    app.router.add_delete(ORDER_PATH, rest(Gateway.cancel, "order.cancel", body=False, path_param="order_id"))
    app.router.add_patch(ORDER_PATH, rest(Gateway.replace, "order.replace", body=True, path_param="order_id"))
    app.router.add_post(
        "/api/v1/admin/accounts",
        rest(Gateway.create_account, "admin.account", body=True, with_request_id=False),
    )
    app.router.add_post("/api/v1/admin/deposits", rest(Gateway.deposit, "admin.deposit", body=True))
    app.router.add_post(
        "/api/v1/admin/kill-switch", rest(Gateway.kill_switch, "admin.kill_switch", body=True)
    )
    app.router.add_post("/api/v1/admin/withdrawals", rest(Gateway.withdraw, "admin.withdraw", body=True))
    for path, op, name in (
        ("/api/v1/orders", Gateway.open_orders, "orders.open"),
        ("/api/v1/history", Gateway.history, "orders.history"),
        ("/api/v1/balances", Gateway.balances, "balances.get"),
    ):
        app.router.add_get(path, rest(op, name, body=False, query=True, with_request_id=False))
    app.router.add_get("/ws", websocket_endpoint(answer, Connection))
    app.router.add_get("/fix", gw.fix.websocket)
    from orderstream.gateway import docapi  # the OrderGateway protocol builds on this module

    docapi.register(app, gw)
    from orderstream.gateway import binance  # the Binance-compatible API, likewise

    binance.register(app, gw)
    from orderstream.gateway import console  # the web pages and the operator views

    console.register(app, gw)
    return app


def main() -> None:
    settings = GatewaySettings()
    logging.config.dictConfig(logging_config("gateway", settings.log_level, settings.worker_id))
    web.run_app(build(settings), host=settings.web_host, port=settings.web_port, access_log=None)

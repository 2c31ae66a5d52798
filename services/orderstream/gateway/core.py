"""What every room of the gateway shares: its state (the producer, the mirrors of instruments and depth,
the order index, keys and rate limits), sending to the topics, finding the caller's order, and the
helpers that parse a request and check an answer against its documented model. Accounts and keys are the
gateway's own MongoDB collections in the main database; the client-order-id index (`gateway_orders`),
signatures seen and rate-limit claims, which orders write, are in a database of their own
(`orders_database`), apart from the order history's bulk writes.

The rooms are mixins of `Core`, composed into the `Gateway` in app.py: order entry (orders.py),
reads (reads.py), streams (streams.py) and admin (admin.py); the protocols frame them: REST
(rest.py), the JSON-RPC WebSocket (jsonrpc.py), the OrderGateway document API (docapi.py), the
Binance-compatible API (binance*.py) and FIX order entry (fixentry.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aiohttp import web
from aiokafka import AIOKafkaProducer
from cryptography.fernet import Fernet
from motor.motor_asyncio import AsyncIOMotorClient
from pydantic import BaseModel, ValidationError
from pymongo.errors import PyMongoError

from orderstream.common import records as r
from orderstream.common.codec import AvroCodec, schema_ids
from orderstream.common.history import ORDERS
from orderstream.common.mirror import Mirror
from orderstream.common.mongo import insert_new
from orderstream.common.records import ALL_RECORDS
from orderstream.gateway import api
from orderstream.gateway.auth import Keys, Principal, Replays, Verifier
from orderstream.gateway.errors import ApiError, validation_error
from orderstream.gateway.inflight import InFlight
from orderstream.gateway.ratelimit import SharedBuckets
from orderstream.gateway.settings import GatewaySettings
from orderstream.gateway.submitter import Item, Submitter

if TYPE_CHECKING:
    from orderstream.gateway.app import Gateway

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[dict[str, Any]]])


def answers(op: str) -> Callable[[F], F]:
    """Check what an operation answers against its documented model (api.RESPONSES) before it is sent."""
    model = api.RESPONSES[op]

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        async def checked(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return model.model_validate(await fn(*args, **kwargs)).model_dump(mode="json")

        return cast(F, checked)

    return wrap


class Core:
    """The gateway's shared state and plumbing (see the module docstring for the rooms built on it)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.codec = AvroCodec(ALL_RECORDS, schema_ids(settings.schema_registry_url))
        client: Any = AsyncIOMotorClient(settings.mongo_url, tz_aware=True)
        self.db: Any = client[settings.mongo_database]
        self.order_db: Any = client[settings.gateway_database()]  # what an order itself writes
        self.keys = Keys(self.db, self._fernet_key())
        replays = Replays(self.order_db["gateway_signatures"])
        self.verifier = Verifier(self.keys, settings.recv_window_ms, replays)
        self.buckets = SharedBuckets(self.order_db["gateway_rate_limits"], settings.orders_per_s,
                                     settings.orders_burst, settings.orders_lease)
        self.swept = [self.buckets]  # every SharedBuckets whose old claims the sweep drops
        self.outstanding = InFlight(settings.max_orders_in_flight, settings.in_flight_expire_s,
                                    wait_target_s=settings.order_wait_target_s,
                                    floor=settings.min_orders_in_flight)
        self.instruments = Mirror.standalone(settings, self.codec, MIRRORED[0], r.Instrument)
        self.depth = Mirror.standalone(settings, self.codec, MIRRORED[1], r.DepthSnapshot)
        self.orders: Any = self.order_db["gateway_orders"]
        self.producer: AIOKafkaProducer | None = None
        self.submitter = Submitter(self.orders, self.send_batch, self.placed, settings.resend_within_s)

    async def move_order_index(self, batch: int = 1000) -> int:
        """Move the idempotency documents a gateway from before `orders_database` kept in the main
        database into the order database, then drop the old collection; how many were copied. Safe
        with several gateways starting at once (a document already there is passed over). Orders a
        gateway of the old version takes meanwhile are not moved: stop those first."""
        old = self.db["gateway_orders"]
        if old.full_name == self.orders.full_name:
            return 0
        copied = 0
        docs: list[dict[str, Any]] = []
        async for doc in old.find({}):
            docs.append(doc)
            if len(docs) >= batch:
                copied += len(docs) - len(await insert_new(self.orders, docs))
                docs = []
        copied += len(docs) - len(await insert_new(self.orders, docs))
        if copied or await old.estimated_document_count():
            await old.drop()
            log.info("order index moved to the order database",
                     extra={"documents": copied, "database": self.orders.database.name})
        return copied

    async def placed(self, order_ids: list[str]) -> set[str]:
        """Which of `order_ids` the order history (the collector's `trader_orders`) has."""
        cursor = self.db[ORDERS].find({"_id": {"$in": order_ids}}, {"_id": 1})
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
    async def instruments_ready(self) -> None:
        if not self.instruments.ready.is_set():
            await asyncio.wait_for(self.instruments.wait(), 10)

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


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")

MIRRORED = ("ref.instruments", "md.depth")
USER_TOPICS = (
    "execution.reports", "collateral.events", "basket.events", "algo.events", "index.events",
    "execution.positions",
)
MARKET_TOPICS = ("md.book", "md.trades", "md.ticker", "md.candles")
BINANCE_READS = ("risk.commands",)  # kill switches: a halted symbol's status (binance.py)
READS = frozenset({*USER_TOPICS, *MARKET_TOPICS, *MIRRORED, *BINANCE_READS})  # checked against the catalog
WRITES = frozenset({"order.commands", "collateral.commands", "risk.commands"})
BASKET = "BASKET"  # the symbol of a basket's own order document (its legs carry the real ones)
INDEX = "INDEX"  # likewise, an index order's
QUOTES = "gateway_quotes"  # quotes, for QUOTE_TTL_NS (index orders placed from them read their prices)
SIGNATURE_SWEEP_S = 60.0

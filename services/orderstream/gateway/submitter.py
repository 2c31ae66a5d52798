"""Group commit of order commands: whatever queued while the last batch was written goes out together.

Every order command of the gateway (place, basket, cancel, replace) is queued here in the order
the requests were read. One task takes everything queued (up to `max_batch`), stores the new
orders' idempotency documents with one `insert_many` (unordered: a repeated client_order_id
fails alone with a duplicate-key error and is answered with the original order), then sends
the commands of the batch to Kafka in queue order and waits for the broker's acks (acks=all)
once for all of them. So a cancel queued after its order is sent after it, and the cost of a
MongoDB round trip and a broker round trip is shared by the whole batch.

The idempotency document keeps the encoded command, and a repeat may send it again (same command
id and order id): so an order whose document was stored but whose send failed is not lost when the
client retries. It is never placed twice, however late the repeat: collateral, the gate of every
new order, remembers each order id it decided for its `order_memory_s` (an hour by default). A
repeat younger than `resend_within_s` (ten minutes, well inside that) is sent again at once; an
older one is sent again only if the order is not in the order history (`placed`), i.e. it never
reached the services; if it is there, the repeat is answered and nothing is sent.

`known(order_id)` finds the document of an order this process queued: while it is queued or
being written (so a cancel that follows at once is not refused as unknown), and afterwards
among the last `remember` orders, so a cancel or a read of a recent order needs no MongoDB query
(FerretDB scans a collection for any query not on `_id`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Histogram

from orderstream.common.mongo import insert_new

log = logging.getLogger(__name__)

WRITE = Histogram(
    "orderstream_gateway_order_write_seconds",
    "One group commit of order commands: its idempotency documents stored (store) or its records "
    "acknowledged by the broker (broker)",
    ["part"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
STORE, BROKER = WRITE.labels("store"), WRITE.labels("broker")


Send = Callable[[list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]], Awaitable[None]]
Placed = Callable[[list[str]], Awaitable[set[str]]]  # which of these order ids the history knows


@dataclass
class Item:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    doc: dict[str, Any] | None  # the idempotency document of a new order; None for cancel and replace
    future: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Submitter:
    def __init__(self, collection: Any, send: Send, placed: Placed, resend_within_s: float = 600,
                 max_batch: int = 1000, remember: int = 50_000) -> None:
        self.collection = collection
        self.send = send
        self.placed = placed
        self.resend_within_s = resend_within_s
        self.max_batch = max_batch
        self.queue: deque[Item] = deque()
        self.wake = asyncio.Event()
        self._pending: dict[str, dict[str, Any]] = {}
        self._recent: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._remember = remember
        self.batches = 0
        self.items = 0

    def known(self, order_id: str) -> dict[str, Any] | None:
        return self._pending.get(order_id) or self._recent.get(order_id)

    def enqueue(self, item: Item) -> asyncio.Future[dict[str, Any]]:
        """Queue a command; the future gives {"order_id", "duplicate"} once it is on the broker."""
        if item.doc is not None:
            item.doc.update(command=item.value, topic=item.topic)
            self._pending[item.doc["order_id"]] = item.doc
        self.queue.append(item)
        self.wake.set()
        return item.future

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.queue:
                batch = [self.queue.popleft() for _ in range(min(len(self.queue), self.max_batch))]
                try:
                    await self._write(batch)
                except Exception as exc:  # the callers answer with an error; nothing was acknowledged
                    log.exception("an order batch could not be written", extra={"orders": len(batch)})
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(exc)
                finally:
                    for item in batch:
                        if item.doc is not None:
                            self._pending.pop(item.doc["order_id"], None)
                            if (
                                item.future.done()
                                and not item.future.exception()
                                and not item.future.result()["duplicate"]
                            ):
                                self._remember_doc(item.doc)

    def _remember_doc(self, doc: dict[str, Any]) -> None:
        self._recent[doc["order_id"]] = {k: v for k, v in doc.items() if k != "command"}
        while len(self._recent) > self._remember:
            self._recent.popitem(last=False)

    async def _write(self, batch: list[Item]) -> None:
        self.batches += 1
        self.items += len(batch)
        new = [item for item in batch if item.doc is not None]
        duplicates: dict[int, Item] = {}
        if new:
            started = time.perf_counter()
            there = await insert_new(self.collection, [item.doc for item in new if item.doc is not None])
            duplicates = {id(new[i]): new[i] for i in there}
            STORE.observe(time.perf_counter() - started)
        originals: dict[str, dict[str, Any]] = {}
        resend: set[str] = set()
        if duplicates:
            ids = [item.doc["_id"] for item in duplicates.values() if item.doc is not None]
            originals = {d["_id"]: d async for d in self.collection.find({"_id": {"$in": ids}})}
            resend = await self._to_resend(list(originals.values()))
        sends = []
        for item in batch:
            if id(item) not in duplicates:
                sends.append((item.topic, item.key, item.value, item.headers))
                continue
            assert item.doc is not None
            original = originals[item.doc["_id"]]
            if original["_id"] in resend:  # again, in case the first send never got through
                sends.append((original["topic"], item.key, bytes(original["command"]), item.headers))
        started = time.perf_counter()
        await self.send(sends)
        BROKER.observe(time.perf_counter() - started)
        for item in batch:
            if id(item) in duplicates:
                assert item.doc is not None
                order_id = originals[item.doc["_id"]]["order_id"]
                item.future.set_result({"order_id": order_id, "duplicate": True})
            else:
                order_id = item.doc["order_id"] if item.doc else None
                item.future.set_result({"order_id": order_id, "duplicate": False})

    async def _to_resend(self, originals: list[dict[str, Any]]) -> set[str]:
        """The `_id`s of the repeated orders to send again: those young enough for the services to
        recognise the repeat, and older ones the order history does not know (never sent)."""
        now = time.time()
        sendable = [d for d in originals if d.get("command") is not None]
        young = {d["_id"] for d in sendable if now - d.get("ts", 0) <= self.resend_within_s}
        old = [d for d in sendable if d["_id"] not in young]
        if not old:
            return young

        def ids(d: dict[str, Any]) -> set[str]:  # a basket is known by its first child
            return {d["order_id"], f"{d['order_id']}/0"}

        known = await self.placed([i for d in old for i in ids(d)])
        return young | {d["_id"] for d in old if not ids(d) & known}

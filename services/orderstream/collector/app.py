"""The collector worker: execution.reports and collateral.events into MongoDB, in batches.

Collections: `trader_orders` (latest state per order), `order_events` (every report),
`balance_history` (every collateral event) and `balances` (each account's latest balance
per asset, which the gateway serves).

A batch is written (idempotently, store.py) before its records are acknowledged,
so Kafka offsets are committed only for what MongoDB already holds; a crash
loses nothing and a redelivery doubles nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from pymongo.errors import ConnectionFailure

from orderstream.collector.settings import CollectorSettings
from orderstream.collector.store import ensure_indexes, write_batch
from orderstream.common.app import Delivery, Service
from orderstream.common.mongo import mongo_database
from orderstream.common.record import Record

log = logging.getLogger(__name__)

DOCS = Counter("orderstream_collector_documents_total", "Documents written", ["collection"])
BATCH = Histogram("orderstream_collector_batch_seconds", "Time to write one batch to MongoDB",
                  buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
LAST_FLUSH = Gauge("orderstream_collector_last_flush_timestamp_seconds", "When the last batch was written")
TRACKED = Counter("orderstream_collector_orders_tracked_total", "Orders seen for the first time")


class Collector:
    def __init__(self, settings: CollectorSettings) -> None:
        self.db = mongo_database(settings)
        self.write_interval_s = settings.write_interval_s
        self.last_write: dict[tuple[str, int], float] = {}  # (topic, partition) -> when last written
        self.indexed = False
        self.written = {"trader_orders": 0, "order_events": 0, "balance_history": 0, "balances": 0}
        self.last_flush: float | None = None
        self.last_batch = 0

    async def on_batch(self, batch: list[tuple[Record, Delivery]]) -> None:
        if not self.indexed:
            await ensure_indexes(self.db)
            self.indexed = True
        await self.pace(batch[0][1])
        t0 = time.perf_counter()
        out = await write_batch(self.db, [record for record, _ in batch])
        BATCH.observe(time.perf_counter() - t0)
        for name, n in (("trader_orders", out.orders), ("order_events", out.events),
                        ("balance_history", out.balances), ("balances", out.account_balances)):
            DOCS.labels(name).inc(n)
            self.written[name] += n
        TRACKED.inc(out.new_orders)
        self.last_flush = time.time()
        self.last_batch = len(batch)
        LAST_FLUSH.set(self.last_flush)

    async def pace(self, source: Delivery) -> None:
        """Wait until this partition's last write is `write_interval_s` old.

        The consumer hands over nothing while a batch is in the handler, so the records that
        arrive meanwhile are fetched and handed over together afterwards: at low load a write
        carries every report of the last interval instead of one. The offsets of the batch
        are committed after it is written, as without the wait.
        """
        where = (source.topic, source.partition)
        due = self.last_write.get(where, 0.0) + self.write_interval_s
        now = time.monotonic()
        if now < due:
            await asyncio.sleep(due - now)
        self.last_write[where] = time.monotonic()

    def health(self) -> dict[str, Any]:
        age = None if self.last_flush is None else round(time.time() - self.last_flush, 3)
        return {"documents_written": dict(self.written), "last_batch": self.last_batch,
                "last_flush_age_s": age}


def build(settings: CollectorSettings | None = None) -> Service:
    """The collector service, ready to run."""
    settings = settings or CollectorSettings()
    service = Service(settings)
    collector = Collector(settings)
    service.transient_errors = (ConnectionFailure,)  # MongoDB unreachable: wait, never dead-letter
    service.consume_batches(("execution.reports", "collateral.events"), size=settings.batch_size)(
        collector.on_batch)
    service.health_extras.append(collector.health)
    return service

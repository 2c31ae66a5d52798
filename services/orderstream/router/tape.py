"""The trades of every symbol over the last `horizon_s`, read from md.trades: what VWAP slices follow.

md.trades is keyed by symbol while the router's partitions are by account, so every router
worker reads all of its partitions outside the consumer group (like `common/mirror.py`), but
from `horizon_s` ago rather than from the beginning: the topic is not compacted. The tape is
a function of md.trades alone, so a restarted router rebuilds the same one. It is only read
when a slice is decided, and what a slice decided is stored with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderstream.common import records as r
from orderstream.common.app import Service
from orderstream.common.codec import DecodeError, RegistryUnavailable
from orderstream.common.topics import spec, topic_configs
from orderstream.router.domain.algo import Tick

log = logging.getLogger(__name__)
TOPIC = "md.trades"


class Tape:
    def __init__(self, service: Service, horizon_s: float) -> None:
        self.service = service
        self.horizon_ns = int(horizon_s * 1e9)
        self.name = service.settings.topic(TOPIC)
        self.trades: dict[str, deque[Tick]] = {}
        self.ready = asyncio.Event()
        service.raw_topic(self.name, config=topic_configs(spec(TOPIC)))
        service.reads.add(TOPIC)
        service.app.task(self._follow)
        service.health_extras.append(
            lambda: {"tape_symbols": len(self.trades), "tape_ready": self.ready.is_set()}
        )

    def of(self, symbol: str) -> deque[Tick]:
        return self.trades.get(symbol, deque())

    def add(self, trade: r.Trade) -> None:
        ticks = self.trades.setdefault(trade.symbol, deque())
        ticks.append((trade.ts_event, trade.price, trade.quantity))
        oldest = trade.ts_event - self.horizon_ns
        while ticks and ticks[0][0] < oldest:
            ticks.popleft()

    async def _follow(self) -> None:  # no parameters: Faust passes the app to a task that takes one
        settings = self.service.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            consumer.subscribe([self.name])  # without a group: every partition, and new ones
            ends: dict[TopicPartition, int] | None = None
            pending: set[TopicPartition] = set()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                if ends is None:  # assigned at last: start horizon_s back; what came before is dropped
                    assigned = list(consumer.assignment())
                    if not assigned:
                        continue
                    since = int(time.time() * 1000) - self.horizon_ns // 1_000_000
                    starts = await consumer.offsets_for_times({tp: since for tp in assigned})
                    ends = await consumer.end_offsets(assigned)
                    for tp in assigned:
                        found = starts.get(tp)
                        consumer.seek(tp, found.offset if found is not None else ends[tp])
                    pending = {tp for tp in assigned if ends[tp] > 0}
                    continue
                for messages in batches.values():
                    for msg in messages:
                        await self._take(msg.value)
                if not self.ready.is_set():
                    pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
                    if not pending:
                        log.info("trade tape ready", extra={"symbols": len(self.trades)})
                        self.ready.set()
        finally:
            await consumer.stop()

    async def _take(self, value: bytes | None) -> None:
        while True:
            try:
                trade = self.service.codec.decode(value)
                break
            except RegistryUnavailable as exc:  # an outage: try the record again
                log.warning("schema registry unavailable; retrying",
                            extra={"topic": self.name, "error": str(exc)})
                await asyncio.sleep(1.0)
            except DecodeError as exc:  # the topic's consumers dead-letter it; here it is only skipped
                log.warning("undecodable trade", extra={"error": str(exc)})
                return
        if isinstance(trade, r.Trade):
            self.add(trade)


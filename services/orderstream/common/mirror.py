"""A compacted topic read in full by every worker: reference data every partition needs.

Instruments, kill switches and tickers are keyed by symbol or scope, while the
services that need them are partitioned by account; so each worker reads all
partitions of such a topic outside its consumer group, from the beginning, and
keeps the latest record per key. `ready` is set once the records that existed at
start have been read. The worker reads them once before Faust starts
(`preload`), so no handler has to wait for them inside a stream: a long wait
there, during the first rebalance, is where Faust can drop a fetched record.
Handlers still `wait()`, which returns at once after the preload.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from orderstream.common.app import Service
from orderstream.common.codec import AvroCodec, DecodeError, RegistryUnavailable
from orderstream.common.record import Record
from orderstream.common.settings import ServiceSettings
from orderstream.common.topics import spec, topic_configs

log = logging.getLogger(__name__)

R = TypeVar("R", bound=Record)


class Mirror(Generic[R]):
    """The latest `R` per key of a compacted catalog topic, across all its partitions."""

    def __init__(
        self, service: Service, topic: str, record: type[R], on_record: Callable[[R], None] | None = None
    ) -> None:
        """A mirror run by a Faust service: preloaded before the worker starts, then followed by a task."""
        self._setup(service.settings, service.codec, topic, record, on_record)
        service.raw_topic(self.name, config=topic_configs(self.spec))  # declared with its config
        service.app.task(self._follow)
        service.mirrors.append(self)
        service.reads.add(topic)
        service.health_extras.append(lambda: {f"mirror_{topic}": len(self.latest)})

    @classmethod
    def standalone(
        cls, settings: ServiceSettings, codec: AvroCodec, topic: str, record: type[R]
    ) -> Mirror[R]:
        """A mirror outside Faust (the gateway): call `follow()` as a task."""
        mirror = cls.__new__(cls)
        mirror._setup(settings, codec, topic, record, None)
        return mirror

    def _setup(
        self,
        settings: ServiceSettings,
        codec: AvroCodec,
        topic: str,
        record: type[R],
        on_record: Callable[[R], None] | None,
    ) -> None:
        self.settings = settings
        self.codec = codec
        self.spec = spec(topic)
        self.record = record
        self.name = settings.topic(topic)
        self.latest: dict[str, R] = {}
        self.ready = asyncio.Event()
        self.on_record = on_record

    async def follow(self) -> None:
        await self._run()

    def get(self, key: str) -> R | None:
        return self.latest.get(key)

    async def wait(self) -> None:
        if not self.ready.is_set():
            await self.ready.wait()

    async def _follow(self) -> None:  # no parameters: Faust passes the app to a task that takes one
        await self._run()

    def preload(self, timeout_s: float = 120.0) -> None:
        """Read the topic to its end, before the Faust worker (and its event loop) starts."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(asyncio.wait_for(self._run(until_ready=True), timeout_s))
        finally:
            loop.close()

    async def _run(self, until_ready: bool = False) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            # Without a group, a subscription gets every partition, and follows new ones.
            consumer.subscribe([self.name])
            ends: dict[TopicPartition, int] = {}
            pending: set[TopicPartition] = set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                if not ends and consumer.assignment():
                    ends = await consumer.end_offsets(list(consumer.assignment()))
                    pending = {
                        tp for tp, end in ends.items() if end > 0 and await consumer.position(tp) < end
                    }
                for tp, messages in batches.items():
                    for msg in messages:
                        while True:
                            try:
                                self._take(msg.key, msg.value)
                                break
                            except RegistryUnavailable as exc:  # an outage: the record comes again
                                log.warning("schema registry unavailable; retrying",
                                            extra={"topic": self.name, "error": str(exc)})
                                await asyncio.sleep(1.0)
                        if tp in pending and msg.offset + 1 >= ends[tp]:
                            pending.discard(tp)
                if pending:
                    for tp in list(pending):
                        if await consumer.position(tp) >= ends[tp]:
                            pending.discard(tp)
                if ends and not pending:
                    if not self.ready.is_set():
                        log.info("mirror ready", extra={"topic": self.name, "keys": len(self.latest)})
                    self.ready.set()  # binds no event loop: nothing waits on it yet during the preload
                    if until_ready:
                        return
        finally:
            await consumer.stop()

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        if key is None or value is None:
            return
        try:
            record = self.codec.decode(value)
        except DecodeError as exc:  # the owning consumer dead-letters it; here it is only skipped
            log.warning(
                "undecodable record on a mirrored topic", extra={"topic": self.name, "error": str(exc)}
            )
            return
        if isinstance(record, self.record):
            self.latest[key.decode()] = record
            if self.on_record is not None:
                self.on_record(record)

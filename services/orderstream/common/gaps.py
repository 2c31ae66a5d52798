"""Hand every record of a partition to its handler in offset order, even when Faust does not.

Faust 0.15 can fail to hand a fetched record to its agent while still handing over
the ones after it: its fetch loop drops the rest of a fetched batch when the flow
stops or the consumer generation moves on, and a record re-fetched after a seek is
dropped when records fetched earlier already moved its read offset past it. The
lifecycle kill test lost orders both ways.

So each service keeps its own watermark per partition: the offset of the next
record it must handle. It starts at the committed offset when a partition is
(re)assigned. A record behind the watermark was already handled and is passed
over; a record ahead of it means records in between went missing, and they are
read straight from the broker with a private consumer (no group, manual
assignment) and handled first, in order. Nothing is lost and the order within a
partition holds; handlers that change state remember what they applied, so a
record handled twice after a restart changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Raw:
    """One record as fetched, whoever fetched it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]

    @classmethod
    def of_event(cls, event: Any) -> Raw:
        """From a Faust stream event."""
        msg = event.message
        headers = event.headers or {}
        return cls(
            msg.topic,
            msg.partition,
            msg.offset,
            msg.key,
            event.value,
            headers if isinstance(headers, dict) else dict(headers),
        )

    @classmethod
    def of_record(cls, record: Any) -> Raw:
        """From an aiokafka ConsumerRecord."""
        return cls(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value,
            dict(record.headers or ()),
        )


class MissingRecords(RuntimeError):
    """The broker no longer has (or will not give) records the watermark says are due."""


class Sequencer:
    """Per-partition watermarks, and the private consumer that reads what Faust skipped."""

    def __init__(self, bootstrap: str, group_id: str, timeout_s: float = 30.0) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._timeout_s = timeout_s
        self._next: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] | None = None  # the group's, read once per assignment
        self._reader: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self.filled = 0  # records read back from the broker (for health and tests)

    def reset(self) -> None:
        """Partitions moved: every watermark starts again at the committed offset."""
        self._next.clear()
        self._committed = None

    async def in_order(self, raw: Raw) -> list[Raw]:
        """What to handle now, in order: nothing for a repeat, else the missing records then `raw`."""
        tp = (raw.topic, raw.partition)
        expected = self._next.get(tp)
        if expected is None:
            expected = await self._start(raw)
        if raw.offset < expected:
            return []
        todo = [raw]
        if raw.offset > expected:
            missing = await self._read(raw.topic, raw.partition, expected, raw.offset)
            log.warning(
                "records were not handed over in order; read them back from the broker",
                extra={
                    "topic": raw.topic,
                    "partition": raw.partition,
                    "expected": expected,
                    "got": raw.offset,
                    "read_back": len(missing),
                },
            )
            self.filled += len(missing)
            todo = missing + todo
        self._next[tp] = raw.offset + 1
        return todo

    async def _start(self, raw: Raw) -> int:
        """Where the group resumes this partition: its committed offset, else the log's start."""
        tp = TopicPartition(raw.topic, raw.partition)
        async with self._lock:
            if self._committed is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap)
                await admin.start()
                try:
                    found = await admin.list_consumer_group_offsets(self._group_id)
                finally:
                    await admin.close()
                self._committed = {
                    (t.topic, t.partition): o.offset for t, o in found.items() if o.offset >= 0
                }
            committed = self._committed.get((raw.topic, raw.partition))
            if committed is not None:
                return committed
            reader = await self._open()
            start: int = (await reader.beginning_offsets([tp]))[tp]
            return start

    async def _open(self) -> AIOKafkaConsumer:
        if self._reader is None:
            reader = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
            )
            await reader.start()
            self._reader = reader
        return self._reader

    async def _read(self, topic: str, partition: int, start: int, end: int) -> list[Raw]:
        """Records [start, end) of one partition, straight from the broker."""
        async with self._lock:
            reader = await self._open()
            tp = TopicPartition(topic, partition)
            reader.assign([tp])
            reader.seek(tp, start)
            out: list[Raw] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._timeout_s
            while await reader.position(tp) < end:
                if loop.time() > deadline:
                    raise MissingRecords(
                        f"{topic}[{partition}] offsets {start}..{end - 1}: "
                        f"got {len(out)} in {self._timeout_s}s"
                    )
                fetched = await reader.getmany(tp, timeout_ms=500, max_records=max(1, end - start))
                out.extend(Raw.of_record(r) for r in fetched.get(tp, ()) if r.offset < end)
            if out and out[0].offset < start:
                raise MissingRecords(f"{topic}[{partition}] read from {out[0].offset}, wanted {start}")
            return out

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

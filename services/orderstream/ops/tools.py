"""Operator tools behind `orderstream tail | lag | dlq-replay`.

- `tail TOPIC`: records of a topic decoded from Avro, one JSON line each (topic, partition,
  offset, key, headers, type, value); an undecodable record is printed with its error and bytes.
- `lag`: per service (its consumer group), the committed offset against the end of every
  partition it reads, and the total.
- dead-letter counts: per dead-letter topic, the records kept and those not replayed yet (the
  gateway's operator dashboard shows them).
- `dlq-replay TOPIC.dlq`: sends dead-lettered records back to the topic they came from (the
  `x-dlq-source-topic` header), with their key and original headers plus
  `x-dlq-replayed-from`. The replayer commits what it sent in its own consumer group, so each
  record is replayed once; the services ignore a record they already applied.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from orderstream.common.codec import AvroCodec, DecodeError, schema_ids
from orderstream.common.records import ALL_RECORDS
from orderstream.common.topics import CATALOG, dlq_name

SERVICES = ("collateral", "router", "matcher", "execution", "collector")
REPLAY_GROUP = "orderstream-dlq-replay"  # the replayer's consumer group (after the topic prefix)
DLQ_HEADERS = (
    "x-dlq-error",
    "x-dlq-error-type",
    "x-dlq-source-topic",
    "x-dlq-source-partition",
    "x-dlq-source-offset",
    "x-dlq-service",
)


def default_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")


def default_prefix() -> str:
    return os.environ.get("ORDERSTREAM_TOPIC_PREFIX", "")


def codec() -> AvroCodec:
    return AvroCodec(ALL_RECORDS, schema_ids(os.environ.get("SCHEMA_REGISTRY_URL")))


def as_json(msg: Any, avro: AvroCodec) -> dict[str, Any]:
    """One consumer record as a JSON-able dict, decoded when it can be."""
    out: dict[str, Any] = {
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "key": msg.key.decode(errors="replace") if msg.key is not None else None,
        "headers": {k: v.decode(errors="replace") for k, v in msg.headers or ()},
    }
    try:
        record = avro.decode(msg.value)
        out.update(type=type(record).avro_name, value=record.model_dump(mode="json"))
    except DecodeError as exc:
        out.update(error=str(exc), value_base64=base64.b64encode(msg.value or b"").decode())
    return out


async def partitions_of(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(p["partition"] for d in described if d["error_code"] == 0 for p in d["partitions"])


async def tail(
    bootstrap: str,
    topic: str,
    *,
    from_beginning: bool,
    limit: int | None,
    follow: bool,
    out: TextIO = sys.stdout,
) -> int:
    """Print records of `topic`; without `follow`, stop at the end offsets seen when it started."""
    avro = codec()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    printed = 0
    try:
        partitions = await partitions_of(bootstrap, topic)
        if not partitions:
            print(f"no topic {topic}", file=sys.stderr)
            return 2
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps) if from_beginning else ends
        for tp in tps:
            consumer.seek(tp, starts[tp])
        while limit is None or printed < limit:
            if not follow and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for msg in records:
                    if limit is not None and printed >= limit:
                        break
                    out.write(json.dumps(as_json(msg, avro)) + "\n")
                    printed += 1
            out.flush()
        return 0
    finally:
        await consumer.stop()


async def lag(bootstrap: str, prefix: str, services: Iterable[str] = SERVICES) -> dict[str, dict[str, int]]:
    """Per service: lag per topic (end offset minus committed, summed over partitions)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        out: dict[str, dict[str, int]] = {}
        for service in services:
            committed = await admin.list_consumer_group_offsets(f"{prefix}orderstream-{service}")
            tps = [tp for tp in committed if "-changelog" not in tp.topic and "__assignor" not in tp.topic]
            ends = await consumer.end_offsets(tps) if tps else {}
            per: dict[str, int] = {}
            for tp in tps:
                name = tp.topic.removeprefix(prefix)
                per[name] = per.get(name, 0) + max(0, ends[tp] - max(0, committed[tp].offset))
            out[service] = per
        return out
    finally:
        await consumer.stop()
        await admin.close()


class Clients:
    """An admin client and a group-less consumer, started once and kept (a process that asks often,
    like the gateway's operator views, spares the connect and metadata of new ones each time)."""

    admin: AIOKafkaAdminClient
    consumer: AIOKafkaConsumer

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.started = False

    async def start(self) -> Clients:
        if not self.started:  # made here, in the running loop
            self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None)
            await self.admin.start()
            await self.consumer.start()
            self.started = True
        return self

    async def stop(self) -> None:
        if self.started:
            self.started = False
            await self.consumer.stop()
            await self.admin.close()


async def dead_letters(
    bootstrap: str, prefix: str, group: str, clients: Clients | None = None
) -> dict[str, dict[str, int]]:
    """Per dead-letter topic of the catalog (named without the prefix): the records it keeps, and how
    many of them the replayer's consumer `group` has not replayed yet. With `clients`, theirs are used
    and kept; else new ones are started and stopped."""
    names = [prefix + dlq_name(t.name) for t in CATALOG]
    own = clients is None
    kept = await (clients or Clients(bootstrap)).start()
    admin, consumer = kept.admin, kept.consumer
    try:
        described = await admin.describe_topics(names)
        tps = [TopicPartition(d["topic"], p["partition"])
               for d in described if d["error_code"] == 0 for p in d["partitions"]]
        firsts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        replayed = await admin.list_consumer_group_offsets(group)
        out: dict[str, dict[str, int]] = {}
        for tp in tps:
            counts = out.setdefault(tp.topic.removeprefix(prefix), {"records": 0, "not_replayed": 0})
            done = replayed[tp].offset if tp in replayed else -1
            counts["records"] += ends[tp] - firsts[tp]
            counts["not_replayed"] += ends[tp] - max(firsts[tp], done)
        return out
    finally:
        if own:
            await kept.stop()


async def dlq_replay(bootstrap: str, dlq: str, *, to: str | None, dry_run: bool, group: str) -> list[str]:
    """Replay every not-yet-replayed record of `dlq`; what was (or would be) sent, one line each."""
    consumer = AIOKafkaConsumer(
        dlq,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await consumer.start()
    await producer.start()
    done: list[str] = []
    try:
        tps = [TopicPartition(dlq, p) for p in await partitions_of(bootstrap, dlq)]
        # Only what is there now: a record that fails again once replayed is dead-lettered again, and
        # waits for the next replay instead of going round while this one runs.
        ends = await consumer.end_offsets(tps)
        while True:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                return done
            upto: dict[TopicPartition, int] = {}
            for tp, records in batch.items():
                for msg in records:
                    if msg.offset >= ends.get(tp, 0):
                        break
                    upto[tp] = msg.offset + 1
                    headers = dict(msg.headers or ())
                    target = to or headers.get("x-dlq-source-topic", b"").decode()
                    if not target:
                        done.append(
                            f"skipped {msg.topic}[{msg.partition}]@{msg.offset}: no source topic header"
                        )
                        continue
                    kept = [(k, v) for k, v in msg.headers or () if k not in DLQ_HEADERS]
                    kept.append(("x-dlq-replayed-from", f"{msg.topic}:{msg.partition}:{msg.offset}".encode()))
                    if not dry_run:
                        await producer.send_and_wait(target, msg.value, key=msg.key, headers=kept)
                    reason = headers.get("x-dlq-error", b"").decode(errors="replace")
                    done.append(
                        f"{'would send' if dry_run else 'sent'} {msg.topic}[{msg.partition}]@{msg.offset}"
                        f" -> {target} (was: {reason})"
                    )
            if not dry_run and upto:
                await consumer.commit(upto)
            if all([await consumer.position(tp) >= ends[tp] for tp in consumer.assignment() if tp in ends]):
                return done
    finally:
        await producer.stop()
        await consumer.stop()

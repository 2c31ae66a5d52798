"""The services' RecordProducer on the real broker: Kafka's partitioner, flush, and a lost record."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner

from orderstream.common.producer import RecordProducer
from tests.conftest import Infra
from tests.kafka_tools import new_topic

pytestmark = pytest.mark.integration


async def read_all(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes | None, bytes | None]]:
    """Whatever the topic holds once `count` records are there (read_committed: stored records only)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed")
    await consumer.start()
    got: list[tuple[int, bytes | None, bytes | None]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [(m.partition, m.key, m.value) for m in records]
    finally:
        await consumer.stop()
    return got


def producer(bootstrap: str, fatal: list[str]) -> RecordProducer:
    return RecordProducer(bootstrap, client_id="test", linger_ms=50, on_fatal=fatal.append)


async def test_keys_land_where_kafkas_partitioner_puts_them_and_flush_means_stored(infra: Infra) -> None:
    topic = await new_topic(infra.kafka_bootstrap, "out", 8)
    fatal: list[str] = []
    out = producer(infra.kafka_bootstrap, fatal)
    keys = [f"acct-{i}".encode() for i in range(200)]
    for key in keys:
        await out.send(topic, key, b"v:" + key)
    await out.send(topic, b"pinned", None, partition=5)  # a tombstone on a given partition
    await out.flush()
    assert out.delivered == out.produced == 201
    got = await read_all(infra.kafka_bootstrap, topic, 201)
    out.stop()
    murmur2 = DefaultPartitioner()
    all_partitions = list(range(8))
    # the partition aiokafka (and the Java client) would choose for each key
    assert {(p, k) for p, k, _ in got if k != b"pinned"} == {
        (murmur2(k, all_partitions, all_partitions), k) for k in keys}
    assert (5, b"pinned", None) in got
    assert fatal == []


async def test_a_record_the_broker_cannot_take_is_fatal(infra: Infra) -> None:
    topic = await new_topic(infra.kafka_bootstrap, "out", 2)
    fatal: list[str] = []
    out = producer(infra.kafka_bootstrap, fatal)
    await out.send(topic, b"k", b"v", partition=7)  # the topic has partitions 0 and 1
    async with asyncio.timeout(30):
        await out.flush()  # returns: the record is reported (failed), and the worker is told
    out.stop()
    assert len(fatal) == 1 and f"{topic}[7]" in fatal[0], fatal


async def test_flush_waits_for_records_sent_before_it_not_after(infra: Infra) -> None:
    topic = await new_topic(infra.kafka_bootstrap, "out")
    fatal: list[str] = []
    out = producer(infra.kafka_bootstrap, fatal)
    for i in range(1000):
        await out.send(topic, b"k", str(i).encode())
    flushing = asyncio.ensure_future(out.flush())
    await asyncio.sleep(0)
    for i in range(1000, 1100):  # sent while the flush waits: it does not wait for these
        await out.send(topic, b"k", str(i).encode())
    await flushing
    assert out.delivered >= 1000
    await out.flush()
    got = await read_all(infra.kafka_bootstrap, topic, 1100)
    out.stop()
    assert [int(v or b"") for _, _, v in got] == list(range(1100))  # in order, once each
    assert fatal == []

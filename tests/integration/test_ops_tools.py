"""The operator CLI's tools on the real broker: tail, lag, dlq-replay."""

from __future__ import annotations

import io
import json

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from orderstream.common.topics import create_topics
from orderstream.ops.tools import dead_letters, dlq_replay, lag, tail
from tests.conftest import Infra
from tests.e2e.stack import CODEC, instrument
from tests.kafka_tools import produce, read, unique_prefix

pytestmark = pytest.mark.integration


async def test_tail_prints_decoded_records_and_names_an_undecodable_one(infra: Infra) -> None:
    prefix = unique_prefix()
    await create_topics(infra.kafka_bootstrap, prefix=prefix, partitions=1)
    topic = prefix + "ref.instruments"
    await produce(
        infra.kafka_bootstrap,
        topic,
        [
            (b"BTC-USD", CODEC.encode(instrument("BTC-USD")), {"x-request-id": b"r1"}),
            (b"junk", b"\x00\x00\x00\x00\x09not avro", {}),
        ],
    )
    out = io.StringIO()
    assert (
        await tail(infra.kafka_bootstrap, topic, from_beginning=True, limit=None, follow=False, out=out) == 0
    )
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert (first["key"], first["type"], first["value"]["tick_size"], first["headers"]) == (
        "BTC-USD",
        "orderstream.ref.Instrument",
        "0.500000000000000000",
        {"x-request-id": "r1"},
    )
    assert second["key"] == "junk" and "error" in second and second["value_base64"]


async def test_lag_is_the_end_offset_minus_the_groups_commit(infra: Infra) -> None:
    prefix = unique_prefix()
    await create_topics(infra.kafka_bootstrap, prefix=prefix, partitions=1)
    topic = prefix + "execution.reports"
    await produce(infra.kafka_bootstrap, topic, [(b"A", b"x", {})] * 5)
    group = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=f"{prefix}orderstream-collector",
        enable_auto_commit=False,
    )
    await group.start()
    tp = TopicPartition(topic, 0)
    group.assign([tp])
    await group.commit({tp: OffsetAndMetadata(2, "")})
    await group.stop()
    assert await lag(infra.kafka_bootstrap, prefix, ["collector", "router"]) == {
        "collector": {"execution.reports": 3},
        "router": {},
    }


async def test_dlq_replay_sends_each_record_back_once_with_its_key_and_headers(infra: Infra) -> None:
    prefix = unique_prefix()
    await create_topics(infra.kafka_bootstrap, prefix=prefix, partitions=1)
    source, dlq = prefix + "order.events", prefix + "order.events.dlq"
    await produce(
        infra.kafka_bootstrap,
        dlq,
        [
            (
                b"A",
                b"payload",
                {
                    "x-request-id": b"r9",
                    "x-dlq-error": b"illegal transition",
                    "x-dlq-source-topic": source.encode(),
                    "x-dlq-source-offset": b"17",
                    "x-dlq-service": b"execution",
                },
            )
        ],
    )
    counts = await dead_letters(infra.kafka_bootstrap, prefix, prefix + "replay")
    assert counts["order.events.dlq"] == {"records": 1, "not_replayed": 1}
    assert counts["md.book.dlq"]["records"] == 0
    dry = await dlq_replay(infra.kafka_bootstrap, dlq, to=None, dry_run=True, group=prefix + "replay")
    assert len(dry) == 1 and dry[0].startswith("would send") and "illegal transition" in dry[0]
    sent = await dlq_replay(infra.kafka_bootstrap, dlq, to=None, dry_run=False, group=prefix + "replay")
    again = await dlq_replay(infra.kafka_bootstrap, dlq, to=None, dry_run=False, group=prefix + "replay")
    assert (len(sent), again) == (1, [])
    counts = await dead_letters(infra.kafka_bootstrap, prefix, prefix + "replay")
    assert counts["order.events.dlq"] == {"records": 1, "not_replayed": 0}
    (msg,) = await read(infra.kafka_bootstrap, source, 1, timeout=10)
    assert (msg.key, msg.value) == (b"A", b"payload")
    assert dict(msg.headers) == {"x-request-id": b"r9", "x-dlq-replayed-from": f"{dlq}:0:0".encode()}

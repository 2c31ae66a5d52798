"""The template's sequencer on the real broker: records Faust skipped are read back, in order."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from orderstream.common.gaps import MissingRecords, Raw, Sequencer
from tests.conftest import Infra
from tests.kafka_tools import new_topic, produce, unique_prefix

pytestmark = pytest.mark.integration


async def topic_with(bootstrap: str, count: int) -> str:
    name = await new_topic(bootstrap, "seq")
    await produce(bootstrap, name, [(b"k", f"v{i}".encode(), {"n": str(i).encode()}) for i in range(count)])
    return name


def raw(topic: str, offset: int) -> Raw:
    return Raw(topic, 0, offset, b"k", f"v{offset}".encode(), {})


async def test_missing_records_are_read_back_in_order_and_repeats_are_passed_over(infra: Infra) -> None:
    topic = await topic_with(infra.kafka_bootstrap, 10)
    seq = Sequencer(infra.kafka_bootstrap, unique_prefix() + "group")
    try:
        # No committed offset: the log's start is the watermark, so offsets 0 and 1 come back first.
        got = await seq.in_order(raw(topic, 2))
        assert [(r.offset, r.value, r.headers) for r in got] == [
            (0, b"v0", {"n": b"0"}),
            (1, b"v1", {"n": b"1"}),
            (2, b"v2", {}),
        ]
        assert [r.offset for r in await seq.in_order(raw(topic, 3))] == [3]
        assert await seq.in_order(raw(topic, 1)) == []  # handled already
        assert [r.offset for r in await seq.in_order(raw(topic, 7))] == [4, 5, 6, 7]
        assert seq.filled == 5
    finally:
        await seq.stop()


async def test_after_a_reassignment_the_watermark_is_the_groups_committed_offset(infra: Infra) -> None:
    topic = await topic_with(infra.kafka_bootstrap, 10)
    group = unique_prefix() + "group"
    committer = AIOKafkaConsumer(bootstrap_servers=infra.kafka_bootstrap, group_id=group,
                                 enable_auto_commit=False)
    await committer.start()
    tp = TopicPartition(topic, 0)
    committer.assign([tp])
    await committer.commit({tp: OffsetAndMetadata(5, "")})
    await committer.stop()
    seq = Sequencer(infra.kafka_bootstrap, group)
    try:
        assert [r.offset for r in await seq.in_order(raw(topic, 8))] == [5, 6, 7, 8]
        seq.reset()
        assert [r.offset for r in await seq.in_order(raw(topic, 5))] == [5]
        assert await seq.in_order(raw(topic, 4)) == []
    finally:
        await seq.stop()


async def test_records_the_broker_cannot_give_are_an_error_not_a_silent_skip(infra: Infra) -> None:
    topic = await topic_with(infra.kafka_bootstrap, 3)
    seq = Sequencer(infra.kafka_bootstrap, unique_prefix() + "group", timeout_s=2.0)
    try:
        assert [r.offset for r in await seq.in_order(raw(topic, 0))] == [0]
        with pytest.raises(MissingRecords):
            await seq.in_order(raw(topic, 6))  # offsets 1..5: 3, 4 and 5 do not exist
    finally:
        await seq.stop()

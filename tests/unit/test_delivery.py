"""The delivery path's order rule (common/delivery.py), without a broker: what is handed over
from a fetched batch given the next offset the consumer expects for the partition; and which
partitions' fetched records a fetch takes while Faust has paused partitions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from faust.types import TP

from orderstream.common.delivery import FastConsumer

TOPIC = "order.commands"
tp = TP(TOPIC, 0)


def consumer(compacted: frozenset[str] = frozenset()) -> Any:
    c: Any = FastConsumer.__new__(FastConsumer)  # only the order bookkeeping is exercised
    c._next, c._done, c._sought, c.sought_back, c.compacted = {}, {}, {}, 0, compacted
    return c


def batch(*offsets: int) -> list[ConsumerRecord]:
    return [ConsumerRecord(TOPIC, 0, o, 0, 0, b"k", b"v", None, 1, 1, ()) for o in offsets]


def offsets(records: list[ConsumerRecord] | None) -> list[int] | None:
    return None if records is None else [r.offset for r in records]


def test_first_batch_after_assignment_is_taken_as_it_comes() -> None:
    assert offsets(consumer()._in_order(tp, batch(40, 41, 42))) == [40, 41, 42]


def test_records_already_handed_over_are_passed_over() -> None:
    c = consumer()
    c._next[tp] = 42
    assert offsets(c._in_order(tp, batch(40, 41, 42, 43))) == [42, 43]
    assert offsets(c._in_order(tp, batch(39, 40))) == []


def test_a_hole_makes_the_consumer_read_again_from_the_first_missing_record() -> None:
    c = consumer()
    c._next[tp] = 10
    assert c._in_order(tp, batch(12, 13)) is None  # the caller seeks back to 10
    assert c.sought_back == 1
    assert offsets(c._in_order(tp, batch(10, 11, 12, 13))) == [10, 11, 12, 13]


def test_a_hole_still_there_after_the_seek_is_gone_from_the_log_and_passed() -> None:
    c = consumer()
    c._next[tp] = 10
    assert c._in_order(tp, batch(15, 16)) is None
    assert offsets(c._in_order(tp, batch(15, 16))) == [15, 16]  # retention removed 10..14
    assert c.sought_back == 1


def test_compacted_topics_have_holes_by_design() -> None:
    c = consumer(frozenset({TOPIC}))
    c._next[tp] = 10
    assert offsets(c._in_order(tp, batch(14, 20))) == [14, 20]


class _Fetched:
    """Stands for aiokafka's PartitionRecords: the records one fetch brought for a partition."""

    def __init__(self, offsets: list[int]) -> None:
        self._offsets = iter(offsets)
        self.next_fetch_offset = offsets[0]

    def __iter__(self) -> _Fetched:
        return self

    def __next__(self) -> int:
        offset = next(self._offsets)
        self.next_fetch_offset = offset + 1
        return offset


def fetcher_holding(tp: TopicPartition, offsets: list[int]) -> tuple[Any, Any]:
    """aiokafka's fetcher with the records of one fetch of `tp` waiting to be taken, and tp's state."""
    state: Any = SimpleNamespace(paused=False, position=offsets[0])
    state.consumed_to = lambda offset: setattr(state, "position", offset)
    assignment = SimpleNamespace(active=True, state_value=lambda _: state)
    f: Any = Fetcher.__new__(Fetcher)
    f._subscriptions = SimpleNamespace(reassignment_in_progress=False, is_assigned=lambda _: True)
    f._records = {tp: FetchResult(tp, assignment=assignment, partition_records=_Fetched(offsets), backoff=0)}
    f._wait_consume_future, f._fetch_waiters, f._closed = None, set(), False
    return f, state


async def handed_to_aiokafka(active: set[TP]) -> Any:
    """What FastConsumer hands aiokafka's fetch as the partitions to take records of."""
    handed = []

    async def getmany(partitions: Any, timeout: float) -> dict[Any, Any]:
        handed.append(partitions)
        return {}

    c: Any = FastConsumer.__new__(FastConsumer)
    c._thread = SimpleNamespace(getmany=getmany)
    await c._getmany(active, 1.0)
    return handed[0]


async def test_a_fetch_while_a_rebalance_has_paused_every_partition_takes_no_records() -> None:
    # aiokafka takes every partition's records when handed an empty set; recovery had just sought
    # this changelog partition to its start, and the records taken then were dropped
    changelog = TopicPartition("state-changelog", 0)
    f, state = fetcher_holding(changelog, [0, 1, 2])
    assert await f.fetched_records(set()) == {changelog: [0, 1, 2]}
    assert state.position == 3

    f, state = fetcher_holding(changelog, [0, 1, 2])
    active: set[TP] = set()  # Faust's active partitions: the rebalance paused them all
    partitions = await handed_to_aiokafka(active)
    assert await f.fetched_records(partitions) == {}
    assert state.position == 0  # left where recovery put it
    active.add(TP(changelog.topic, changelog.partition))  # recovery resumes the partition
    assert await f.fetched_records(partitions) == {changelog: [0, 1, 2]}

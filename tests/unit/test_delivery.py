"""The delivery path's order rule (common/delivery.py), without a broker: what is handed over
from a fetched batch given the next offset the consumer expects for the partition."""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord
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

"""StateStore (common/state.py) in batches: one effect record and each changed document once per
batch, repeats recognised across batches and after a reload, and effects pruned in the partition
that holds them."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from orderstream.common.app import TableWriter
from orderstream.common.state import Changes, Emit, StateStore


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None,
                   headers: Any = None) -> None:
        self.sent.append((topic, key, value, partition))


class Store(dict[bytes, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self._key_partition: dict[bytes, int] = {}


class Output:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    async def send_encoded(self, key: str, value: bytes) -> None:
        self.sent.append((key, value))


class Signal:
    def connect(self, fn: Any) -> None:
        pass


def store(window: int = 100) -> tuple[StateStore, Store, Producer, Output]:
    data, producer, out = Store(), Producer(), Output()
    table = SimpleNamespace(data=data, changelog_topic=SimpleNamespace(get_topic_name=lambda: "cl"),
                            get=data.get, items=data.items)
    service: Any = SimpleNamespace(
        records=producer, batch_ends=[], resets=[], settings=SimpleNamespace(partitions=4),
        codec=SimpleNamespace(encode=lambda record: f"enc:{record}".encode()),
        app=SimpleNamespace(Table=lambda *a, **k: table, on_partitions_revoked=Signal(),
                            on_partitions_assigned=Signal()),
    )
    service.table_writer = lambda t: TableWriter(service, t)
    return StateStore(service, "s", {"out": out}, window), data, producer, out  # type: ignore[arg-type]


def add(n: int) -> Any:
    def step(changes: Changes) -> list[Emit]:
        doc = changes.get("acct") or {"total": 0}
        doc["total"] += n
        changes.put("acct", doc)
        return [Emit("out", "acct", f"added {n}")]  # type: ignore[arg-type]
    return step


async def test_a_batch_writes_one_effect_and_each_document_once() -> None:
    s, data, producer, out = store()
    assert await s.apply("src-1", add(1), 2)
    assert await s.apply("src-2", add(2), 2)
    assert s.docs()["acct"] == {"total": 3}  # the second step saw the first
    assert producer.sent == []  # nothing stored before the batch ends
    await s.flush()
    keys = [(k, p) for _, k, _, p in producer.sent]
    assert keys == [(b"e|src-1", 2), (b"d|acct", 2)]
    assert json.loads(data[b"d|acct"]) == {"v": 1, "doc": {"total": 3}}
    assert [v for _, v in out.sent] == [b"enc:added 1", b"enc:added 2"]


async def test_a_repeat_is_not_applied_again_but_its_records_are_sent_again() -> None:
    s, _, _, out = store()
    await s.apply("src-1", add(1), 0)
    await s.apply("src-2", add(5), 0)
    await s.flush()
    s.forget()  # as after a restart: everything comes from the table
    out.sent.clear()
    assert not await s.apply("src-2", add(5), 0)
    assert s.docs()["acct"] == {"total": 6}
    assert out.sent == [("acct", b"enc:added 5")]


async def test_a_dropped_batch_is_applied_again() -> None:
    s, _, _, _ = store()
    await s.apply("src-1", add(1), 0)
    s.forget()  # the batch failed before it was stored
    assert await s.apply("src-1", add(1), 0)
    assert s.docs()["acct"] == {"total": 1}


async def test_old_effects_are_deleted_in_the_partition_that_holds_them() -> None:
    s, data, producer, _ = store(window=2)
    await s.apply("a", add(1), 1)
    await s.flush()
    await s.apply("b", add(1), 3)
    await s.flush()
    await s.apply("c", add(1), 3)
    await s.flush()
    deletes = [(k, p) for _, k, v, p in producer.sent if v is None]
    assert deletes == [(b"e|a", 1)]
    assert b"e|a" not in data


async def test_a_reload_takes_only_the_partitions_this_worker_owns_not_its_standby_copies() -> None:
    s, data, _, _ = store()
    await s.apply("src-1", add(1), 0)
    await s.flush()
    for raw_key in list(data):  # what the worker wrote lives in partition 0
        data._key_partition[raw_key] = 0
    # a standby copy of another worker's partition 1, as Faust's standby replica keeps it
    data[b"d|acct-of-another"] = json.dumps({"v": 1, "doc": {"total": 99}}).encode()
    data._key_partition[b"d|acct-of-another"] = 1
    s.service.app.assignor = SimpleNamespace(assigned_actives=lambda: {TP("cl", 0), TP("source", 1)})
    s.forget()
    assert set(s.docs()) == {"acct"}
    s.service.app.assignor = SimpleNamespace(assigned_actives=lambda: {TP("cl", 0), TP("cl", 1)})
    s.forget()  # a rebalance gave it partition 1 too: now those documents are its own
    assert set(s.docs()) == {"acct", "acct-of-another"}

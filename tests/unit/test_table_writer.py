"""TableWriter: the store changes at once, the changelog records follow in order, on the given partition."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from orderstream.common.app import TableWriter


class SlowProducer:
    """Records every send and makes each one wait, as a producer under load does."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.gate = asyncio.Event()

    async def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None,
                   headers: Any = None) -> None:
        await self.gate.wait()
        self.sent.append((topic, key, value, partition))


class Store(dict[bytes, bytes]):
    def __init__(self) -> None:
        super().__init__()
        self._key_partition: dict[bytes, int] = {}


def writer() -> tuple[TableWriter, Store, SlowProducer]:
    store, producer = Store(), SlowProducer()
    table = SimpleNamespace(data=store, changelog_topic=SimpleNamespace(get_topic_name=lambda: "t-changelog"))
    service = SimpleNamespace(records=producer)
    return TableWriter(service, table), store, producer  # type: ignore[arg-type]


async def test_the_store_has_every_write_before_the_first_send_returns() -> None:
    w, store, producer = writer()
    store[b"old"] = b"x"
    store._key_partition[b"old"] = 3
    task = asyncio.create_task(w.write(3, [(b"a", b"1"), (b"old", None), (b"b", b"2")]))
    await asyncio.sleep(0)  # the write now waits in its first send
    assert dict(store) == {b"a": b"1", b"b": b"2"}  # another agent reads all of it, or none
    assert producer.sent == []
    producer.gate.set()
    await task
    assert producer.sent == [("t-changelog", b"a", b"1", 3), ("t-changelog", b"old", None, 3),
                             ("t-changelog", b"b", b"2", 3)]
    # the in-memory store drops these keys if partition 3 moves to another worker; a deleted
    # key is not remembered
    assert store._key_partition == {b"a": 3, b"b": 3}

"""Keyed JSON documents in a changelog-backed Faust table, changed at most once per source record.

A handler calls `StateStore.apply(source_id, step)`. `step` reads and writes
documents through a `Changes` view and returns the records to send. The store
then writes, in this order and into the source record's changelog partition:

1. `e|<source_id>`: one atomic effect record with the after-image of every
   document the step changed (each with its version) and the encoded records;
2. `d|<key>` for each changed document.

All keys a source record touches belong to its partition (documents are keyed
by what the topic is keyed by), so after a hard kill the changelog holds a
prefix of these writes. Recovery takes, per document, the newest version among
`d|` and the effect records, which completes a step cut off half-way. A source
id seen again (Kafka redelivery) is not applied again; the records it caused
are sent again instead, with the same event ids, since they may never have
reached the broker.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from orderstream.common.app import Output, Service
from orderstream.common.record import Record

log = logging.getLogger(__name__)

Doc = dict[str, Any]


@dataclass(frozen=True)
class Emit:
    """One record to send: catalog topic, key, record."""

    topic: str
    key: str
    record: Record


class Changes:
    """The documents one step reads and writes; nothing is stored until the step returns."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.written: dict[str, Doc | None] = {}

    def get(self, key: str) -> Doc | None:
        """A private copy of the document (changes to it count only once `put`)."""
        doc = self.written[key] if key in self.written else self._store.docs().get(key)
        return copy.deepcopy(doc) if doc is not None else None

    def put(self, key: str, doc: Doc) -> None:
        self.written[key] = doc

    def delete(self, key: str) -> None:
        self.written[key] = None

    def has(self, key: str) -> bool:
        """Whether the document exists (as this step leaves it), without copying it."""
        if key in self.written:
            return self.written[key] is not None
        return key in self._store.docs()

    # A document with a map that grows (an account's holds, its open orders) keeps each entry
    # of that map as a document of its own, `<key>|<entry id>`, so a step reads and writes
    # the entries it touches, not every one of them.

    def get_split(self, key: str, field: str, ids: Sequence[str]) -> Doc | None:
        """The document with, in `field`, the entries of `ids` that exist (entries stored inside
        the document, as before they had documents of their own, come along too)."""
        doc = self.get(key)
        if doc is None:
            return None
        entries = doc.setdefault(field, {})
        for entry_id in ids:
            entry = self.get(f"{key}|{entry_id}")
            if entry is not None:
                entries[entry_id] = entry
        return doc

    def put_split(self, key: str, doc: Doc, field: str, ids: Sequence[str]) -> None:
        """Store `doc` without `field`, each entry of `field` as its own document; an entry of
        `ids` no longer in `field` is deleted."""
        entries = doc[field]
        self.put(key, {k: v for k, v in doc.items() if k != field})
        for entry_id, entry in entries.items():
            self.put(f"{key}|{entry_id}", entry)
        for entry_id in ids:
            if entry_id not in entries and self.has(f"{key}|{entry_id}"):
                self.delete(f"{key}|{entry_id}")


Step = Callable[[Changes], list[Emit]]


class StateStore:
    """A service's documents and its memory of applied source ids."""

    def __init__(self, service: Service, name: str, outputs: dict[str, Output], window: int) -> None:
        self.service = service
        self.outputs = outputs
        self.window = window
        self.table = service.app.Table(
            name, key_type=bytes, value_type=bytes, partitions=service.settings.partitions
        )
        self.writer = service.table_writer(self.table)
        self._docs: dict[str, Doc] | None = None
        self._versions: dict[str, int] = {}
        self._recent: deque[str] = deque()
        self._counter = 0
        self.generation = 0  # moves on whenever the documents are reloaded

        async def moved(sender: Any, /, *tps: Any, signal: Any, **kwargs: Any) -> None:
            self.forget()

        service.app.on_partitions_revoked.connect(moved)
        service.app.on_partitions_assigned.connect(moved)

    # -- loading --------------------------------------------------------------

    def forget(self) -> None:
        """Partitions moved: reload from the table on the next use."""
        self._docs = None
        self.generation += 1

    def loaded_count(self) -> int:
        """Documents in memory, without loading them (for health checks, which may run mid-recovery)."""
        return len(self._docs or {})

    def docs(self) -> dict[str, Doc]:
        if self._docs is None:
            self._load()
        assert self._docs is not None
        return self._docs

    def _load(self) -> None:
        docs: dict[str, tuple[int, Doc | None]] = {}
        effects: list[tuple[int, str]] = []

        def offer(key: str, version: int, doc: Doc | None) -> None:
            if key not in docs or docs[key][0] < version:
                docs[key] = (version, doc)

        for raw_key, raw in self.table.items():
            kind, _, rest = raw_key.decode().partition("|")
            value = json.loads(raw)
            if kind == "d":
                offer(rest, value["v"], value["doc"])
            elif kind == "e":
                effects.append((value["n"], rest))
                for key, version, doc in value["docs"]:
                    offer(key, version, doc)
        self._docs = {k: doc for k, (_, doc) in docs.items() if doc is not None}
        self._versions = {k: v for k, (v, _) in docs.items()}
        effects.sort()
        self._recent = deque(sid for _, sid in effects)
        self._counter = max((n for n, _ in effects), default=self._counter)
        log.info("state restored", extra={"documents": len(self._docs), "remembered": len(self._recent)})

    # -- applying ---------------------------------------------------------------

    async def apply(self, source_id: str, step: Step, partition: int) -> bool:
        """Apply `step` once for `source_id` and send what it returns; False for a repeat.

        `partition` is the source record's: the table's changelog partition for its writes.
        """
        docs = self.docs()
        done = self.table.get(f"e|{source_id}".encode())
        if done is not None:
            for topic, key, value in json.loads(done)["out"]:
                await self.outputs[topic].send_encoded(key, base64.b64decode(value))
            return False
        changes = Changes(self)
        emits = step(changes)
        encoded = [(e.topic, e.key, self.service.codec.encode(e.record)) for e in emits]
        self._counter += 1
        images = []
        for key, doc in changes.written.items():
            version = self._versions.get(key, 0) + 1
            self._versions[key] = version
            images.append((key, version, doc))
        effect = {
            "n": self._counter,
            "docs": images,
            "out": [(t, k, base64.b64encode(v).decode()) for t, k, v in encoded],
        }
        # Memory and store change before the first await, so another agent of this worker
        # never reads half of this step.
        writes: list[tuple[bytes, bytes | None]] = [(f"e|{source_id}".encode(), _dump(effect))]
        for key, version, doc in images:
            if doc is None:
                docs.pop(key, None)
                writes.append((f"d|{key}".encode(), None))
            else:
                docs[key] = doc
                writes.append((f"d|{key}".encode(), _dump({"v": version, "doc": doc})))
        self._recent.append(source_id)
        while len(self._recent) > self.window:
            writes.append((f"e|{self._recent.popleft()}".encode(), None))
        await self.writer.write(partition, writes)
        for topic, key, value in encoded:
            await self.outputs[topic].send_encoded(key, value)
        return True


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()

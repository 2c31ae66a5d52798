"""The matcher worker: match.commands in; order.events, md.trades, md.book, md.depth out.

Wiring only: decode (the template), apply the command to the pure `Matcher`,
write the change to the table (state.py explains the layout), send.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from typing import Any

import faust

from orderstream.common import records as r
from orderstream.common.app import Delivery, Service
from orderstream.common.record import Record
from orderstream.common.state import owned_items
from orderstream.matcher.domain.engine import Matcher
from orderstream.matcher.settings import MatcherSettings
from orderstream.matcher.state import (
    Change,
    command_key,
    command_writes,
    instrument_key,
    record_change,
    restore_books,
)

log = logging.getLogger(__name__)


class MatcherWorker:
    """The matcher's state and handlers inside one Faust worker."""

    def __init__(self, service: Service, settings: MatcherSettings) -> None:
        self.service = service
        self.settings = settings
        # bytes keys and values: Faust then uses its raw codec, also when it recovers the changelog.
        self.table = service.app.Table(
            "matcher-state", key_type=bytes, value_type=bytes, partitions=settings.partitions,
        )
        self.writer = service.table_writer(self.table)
        self.outputs = {name: service.output(name) for name in
                        ("order.events", "md.trades", "md.book", "md.depth", "match.commands")}
        self.matcher: Matcher | None = None  # built from the table after each assignment
        self.seqs: dict[str, int] = {}
        self.recent: dict[str, deque[str]] = {}
        self.depth_sent: dict[str, int] = {}
        self.expiry_sent: dict[str, int] = {}

    # -- state --------------------------------------------------------------

    def loaded(self) -> Matcher:
        """The matcher for the partitions this worker holds, rebuilt from the table when needed."""
        if self.matcher is None:
            items, _ = owned_items(self.service.app, self.table)  # not the standby copies
            restored = restore_books(items, self.settings.market_band_ppm)
            matcher = Matcher(self.settings.market_band_ppm)
            matcher.books.update(restored.books)
            for key, value in items:
                if key.startswith(b"i|"):
                    matcher.set_instrument(r.Instrument.model_validate_json(value))
            self.recent = {s: deque(ids) for s, ids in restored.recent.items()}
            self.seqs = restored.seqs
            self.matcher = matcher
            log.info("books restored", extra={
                "books": len(restored.books), "orders": sum(len(b.orders) for b in restored.books.values())})
        return self.matcher

    def forget(self) -> None:
        """Partitions moved: rebuild from the table on the next record."""
        self.matcher = None

    # -- handlers -------------------------------------------------------------

    async def on_instrument(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, r.Instrument)
        self.loaded().set_instrument(record)
        value = record.model_dump_json().encode()
        await self.writer.write(delivery.partition, [(instrument_key(record.symbol), value)])

    async def on_command(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(
            record, r.SubmitOrder | r.SubmitOrderList | r.CancelOrder | r.ReplaceOrder | r.ExpireOrders
        )
        done = self.table.get(command_key(record.command_id))
        if done is not None:
            # Seen before: its effects are in the table; its records may not have reached the
            # broker before a crash, so send them again (same event ids, same sequence numbers).
            for topic, key, value in Change.decode(done).outputs():
                await self.outputs[topic].send_encoded(key, value)
            return
        matcher = self.loaded()
        outs = matcher.handle(record, time.time_ns())
        book = matcher.books.get(record.symbol)
        encoded = [(o.topic, o.key, self.service.codec.encode(o.record)) for o in outs]
        seq = self.seqs.get(record.symbol, 0) + 1
        self.seqs[record.symbol] = seq
        change = record_change(record.symbol, book, seq, encoded)
        await self.writer.write(delivery.partition, command_writes(record.command_id, change)
                                + self._prune(record.symbol, record.command_id))
        for topic, key, value in encoded:
            await self.outputs[topic].send_encoded(key, value)

    def _prune(self, symbol: str, command_id: str) -> list[tuple[bytes, bytes | None]]:
        """Keep the change records of the last `dedupe_window` commands per symbol: the deletes."""
        recent = self.recent.setdefault(symbol, deque())
        recent.append(command_id)
        drop: list[tuple[bytes, bytes | None]] = []
        while len(recent) > self.settings.dedupe_window:
            drop.append((command_key(recent.popleft()), None))
        return drop

    # -- timers ---------------------------------------------------------------

    async def send_due_expiries(self) -> None:
        """Ask, through the log, for the expiry of GTD orders whose time has come."""
        if self.matcher is None:
            return
        now = time.time_ns()
        for symbol, book in self.matcher.books.items():
            due = book.next_expiry()
            if due is not None and due <= now and self.expiry_sent.get(symbol) != due:
                self.expiry_sent[symbol] = due
                await self.outputs["match.commands"].send(symbol, r.ExpireOrders(
                    command_id=f"expire-{uuid.uuid4()}", ts_event=now, symbol=symbol))

    async def send_depth(self) -> None:
        """A depth snapshot of every book that changed since the last one (compacted topic)."""
        if self.matcher is None:
            return
        for symbol, book in list(self.matcher.books.items()):
            if symbol in self.matcher.rules and self.depth_sent.get(symbol) != book.meta.md_seq:
                snap = self.matcher.depth(symbol, self.settings.depth_levels, time.time_ns())
                await self.outputs["md.depth"].send(symbol, snap)
                self.depth_sent[symbol] = snap.sequence


def build(settings: MatcherSettings | None = None) -> Service:
    """The matcher service, ready to run."""
    settings = settings or MatcherSettings()
    service = Service(settings)
    worker = MatcherWorker(service, settings)
    service.consume("ref.instruments")(worker.on_instrument)
    service.consume("match.commands")(worker.on_command)
    app: faust.App = service.app

    async def partitions_moved(sender: Any, /, *tps: Any, signal: Any, **kwargs: Any) -> None:
        worker.forget()

    app.on_partitions_revoked.connect(partitions_moved)
    app.on_partitions_assigned.connect(partitions_moved)
    service.resets.append(worker.forget)  # a failed command may have left a book half-changed

    app.timer(settings.expiry_check_s)(worker.send_due_expiries)
    app.timer(settings.depth_interval_s)(worker.send_depth)
    return service

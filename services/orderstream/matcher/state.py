"""How the matcher's state is written to its changelog-backed table, and read back.

Keys (bytes): `i|<symbol>` instrument, `o|<symbol>|<order_id>` an open order,
`c|<command_id>` the change record of one command. For every command the
worker writes its `c|` record first (one atomic record: the symbol's command
sequence, the book's counters, the after-image of every order it changed and
the encoded records it sent), then the `o|` records. All of a symbol's keys
land in the same changelog partition, so after a hard kill the log holds a
prefix of what was written; recovery applies the newest `c|` record of each
symbol over the `o|` records, which completes a command cut off half-way.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from orderstream.matcher.domain.book import Book
from orderstream.matcher.domain.model import Kind, Meta, Order, Stp, Tif

_ORDER_FIELDS = tuple(Order.__dataclass_fields__)


def order_key(symbol: str, order_id: str) -> bytes:
    return f"o|{symbol}|{order_id}".encode()


def command_key(command_id: str) -> bytes:
    return f"c|{command_id}".encode()


def instrument_key(symbol: str) -> bytes:
    return f"i|{symbol}".encode()


def dump_order(o: Order) -> list[Any]:
    return [getattr(o, f) for f in _ORDER_FIELDS]


def load_order(values: list[Any]) -> Order:
    o = Order(*values)
    o.kind, o.tif, o.stp = Kind(o.kind), Tif(o.tif), Stp(o.stp)
    return o


@dataclass
class Change:
    """What one command did to one symbol's book, and what it sent."""

    symbol: str
    seq: int  # per-symbol command sequence
    meta: dict[str, Any]
    orders: dict[str, list[Any] | None]
    out: list[tuple[str, str, str]] = field(default_factory=list)  # topic, key, base64 Avro

    def encode(self) -> bytes:
        doc = {"symbol": self.symbol, "seq": self.seq, "meta": self.meta, "orders": self.orders,
               "out": self.out}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Change:
        doc = json.loads(data)
        return cls(doc["symbol"], doc["seq"], doc["meta"], doc["orders"], [tuple(x) for x in doc["out"]])

    def outputs(self) -> list[tuple[str, str, bytes]]:
        return [(t, k, base64.b64decode(v)) for t, k, v in self.out]


def record_change(symbol: str, book: Book | None, seq: int, out: list[tuple[str, str, bytes]]) -> Change:
    """The change record of the command just applied to `book` (None: the symbol has no book)."""
    dirty = book.drain_dirty() if book is not None else {}
    return Change(symbol, seq, meta_dict(book.meta) if book is not None else {},
                  {oid: None if o is None else dump_order(o) for oid, o in dirty.items()},
                  [(t, k, base64.b64encode(v).decode()) for t, k, v in out])


def command_writes(command_id: str, change: Change) -> list[tuple[bytes, bytes | None]]:
    """The table writes of one command, in the order they must be made (None deletes)."""
    writes: list[tuple[bytes, bytes | None]] = [(command_key(command_id), change.encode())]
    for oid, values in change.orders.items():
        writes.append((order_key(change.symbol, oid),
                       None if values is None else json.dumps(values, separators=(",", ":")).encode()))
    return writes


def meta_dict(meta: Meta) -> dict[str, Any]:
    return {"md_seq": meta.md_seq, "priority": meta.priority, "trade_seq": meta.trade_seq,
            "last_price": meta.last_price}


@dataclass
class Restored:
    books: dict[str, Book]
    seqs: dict[str, int]  # per-symbol command sequence
    recent: dict[str, list[str]]  # per symbol, the command ids with a change record, oldest first


def restore_books(items: list[tuple[bytes, bytes]], band_ppm: int) -> Restored:
    """Books, command sequences and remembered command ids from the table's contents."""
    orders: dict[str, dict[str, list[Any]]] = {}
    latest: dict[str, Change] = {}
    seen: dict[str, list[tuple[int, str]]] = {}
    for key, value in items:
        kind, _, rest = key.decode().partition("|")
        if kind == "o":
            symbol, _, oid = rest.partition("|")
            orders.setdefault(symbol, {})[oid] = json.loads(value)
        elif kind == "c":
            ch = Change.decode(value)
            seen.setdefault(ch.symbol, []).append((ch.seq, rest))
            if ch.symbol not in latest or latest[ch.symbol].seq < ch.seq:
                latest[ch.symbol] = ch
    books: dict[str, Book] = {}
    seqs: dict[str, int] = {}
    for symbol in set(orders) | set(latest):
        mine = orders.get(symbol, {})
        meta = Meta()
        last = latest.get(symbol)
        if last is not None:
            seqs[symbol] = last.seq
            for oid, values in last.orders.items():  # complete a command cut off half-way
                if values is None:
                    mine.pop(oid, None)
                else:
                    mine[oid] = values
            if last.meta:
                meta = Meta(**last.meta)
        books[symbol] = Book.restore(symbol, meta, (load_order(v) for v in mine.values()), band_ppm=band_ppm)
    recent = {s: [cid for _, cid in sorted(v)] for s, v in seen.items()}
    return Restored(books, seqs, recent)

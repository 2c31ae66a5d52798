"""The order-history collections in MongoDB, written idempotently in batches (motor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase
from pymongo import ASCENDING, DESCENDING, InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError

from orderstream.collector.documents import (
    balance_document,
    balance_state_document,
    event_document,
    latest_per_balance,
    latest_per_order,
)
from orderstream.common import records as r
from orderstream.common.history import ACCOUNT_BALANCES, ORDERS, order_document
from orderstream.common.record import Record

DUPLICATE_KEY = 11000
EVENTS, BALANCES = "order_events", "balance_history"


@dataclass
class Written:
    """What one batch changed: documents inserted or updated per collection."""

    orders: int = 0
    events: int = 0
    balances: int = 0
    account_balances: int = 0
    new_orders: int = 0


async def ensure_indexes(db: AsyncIOMotorDatabase[Any]) -> None:
    await db[ORDERS].create_index([("account_id", ASCENDING), ("order_id", ASCENDING)], unique=True)
    await db[ORDERS].create_index([("order_id", ASCENDING)])
    await db[ORDERS].create_index([("account_id", ASCENDING), ("ts_ns", DESCENDING)])
    await db[ORDERS].create_index([("symbol", ASCENDING), ("ts_ns", DESCENDING)])
    await db[EVENTS].create_index([("account_id", ASCENDING), ("ts_ns", DESCENDING)])
    await db[EVENTS].create_index([("order_id", ASCENDING), ("sequence", ASCENDING)])
    await db[BALANCES].create_index([("account_id", ASCENDING), ("ts_ns", DESCENDING)])


async def write_batch(db: AsyncIOMotorDatabase[Any], records: list[Record]) -> Written:
    """Write a batch; the same batch written again changes nothing.

    `order_events` and `balance_history` are keyed by event id, so a repeat is a
    duplicate key and is skipped. `trader_orders` keeps one document per order, replaced
    only by a higher per-order sequence (`_replace_newer`); `balances` one per account and
    asset, replaced only by a higher per-account sequence (`_replace_newer_balances`).
    """
    reports = [x for x in records if isinstance(x, r.ExecutionReport)]
    others = [x for x in records if not isinstance(x, r.ExecutionReport)]
    out = Written()
    if reports:
        out.events = await _apply(db, EVENTS, [InsertOne(event_document(x)) for x in reports])
        latest = [order_document(x) for x in latest_per_order(reports)]
        out.orders, out.new_orders = await _replace_newer(db, latest)
    if others:
        out.balances = await _apply(db, BALANCES, [InsertOne(balance_document(x)) for x in others])
        out.account_balances = await _replace_newer_balances(db, latest_per_balance(others))
    return out


async def _replace_newer_balances(db: AsyncIOMotorDatabase[Any], events: list[Record]) -> int:
    """Store each account's balance of an asset unless a newer one is stored: the stored sequences
    read in one query, then one upsert per newer document, in one unordered bulk. A redelivered or
    re-sent older event never overwrites a newer balance. The per-account sequence decides, not the
    time (a settlement and its release share one) nor the Kafka offset (collateral sends a
    redelivered command's events again, after newer ones). Unlike `_replace_newer`, a reader never
    sees an asset missing. Events from before the sequence (0) compare by time, never over one with it.

    Not a conditional upsert that fails as a duplicate key when the stored one is newer: FerretDB
    answers such a failed upsert without `nModified`, and pymongo then raises KeyError (a re-sent
    balance event was dead-lettered). One worker owns an account's partition: nothing writes a
    balance between the read and the write.
    """
    docs = [balance_state_document(e) for e in events]
    ids = [d["_id"] for d in docs]
    stored = {
        d["_id"]: (d.get("sequence", 0), d.get("ts_ns", 0))
        async for d in db[ACCOUNT_BALANCES].find({"_id": {"$in": ids}}, {"sequence": 1, "ts_ns": 1})
    }

    def newer(doc: dict[str, Any]) -> bool:
        if doc["_id"] not in stored:
            return True
        sequence, ts_ns = stored[doc["_id"]]
        if doc["sequence"]:
            return bool(sequence < doc["sequence"])
        return bool(sequence == 0 and ts_ns <= doc["ts_ns"])

    ops = [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in docs if newer(doc)]
    return await _apply(db, ACCOUNT_BALANCES, ops) if ops else 0


async def _replace_newer(db: AsyncIOMotorDatabase[Any], docs: list[dict[str, Any]]) -> tuple[int, int]:
    """Store each order document unless one with the same or a higher sequence is there.

    Three statements per batch, whatever its size: read the stored sequences, delete the
    older documents, insert the newer ones. A conditional upsert per order would be one
    statement per order; FerretDB spends about 0.4 ms on each, so 2,000 would take about
    a second. Safe without a transaction: one worker owns an account's partition, and a
    batch is acknowledged only after all three; a crash in between is repaired by the
    redelivery. A history read between the delete and the insert misses those orders
    for that moment (milliseconds).
    Returns (documents written, orders seen for the first time).
    """
    ids = [d["_id"] for d in docs]
    stored = {d["_id"]: d["sequence"] async for d in db[ORDERS].find({"_id": {"$in": ids}}, {"sequence": 1})}
    newer = [d for d in docs if stored.get(d["_id"], 0) < d["sequence"]]
    replaced = [d["_id"] for d in newer if d["_id"] in stored]
    if replaced:
        await db[ORDERS].delete_many({"_id": {"$in": replaced}})
    written = await _apply(db, ORDERS, [InsertOne(d) for d in newer]) if newer else 0
    return written, sum(1 for d in newer if d["_id"] not in stored)


async def _apply(db: AsyncIOMotorDatabase[Any], collection: str, ops: list[Any]) -> int:
    """Run `ops` unordered; how many documents changed. Duplicate keys are the expected
    repeats; any other write error is raised."""
    try:
        result = await db[collection].bulk_write(ops, ordered=False)
    except BulkWriteError as exc:
        unexpected = [e for e in exc.details.get("writeErrors", []) if e.get("code") != DUPLICATE_KEY]
        if unexpected:
            raise
        details = exc.details
        return int(details.get("nInserted", 0) + details.get("nModified", 0) + details.get("nUpserted", 0))
    return int(result.inserted_count + result.modified_count + result.upserted_count)

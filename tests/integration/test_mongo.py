"""MongoDB through motor against the MongoDB-wire server: what the collector relies on."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo import ReplaceOne
from pymongo.errors import DuplicateKeyError

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncIOMotorDatabase[Any]]:
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(mongo_url, serverSelectionTimeoutMS=10_000)
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield client[name]
    await client.drop_database(name)
    client.close()


async def test_write_and_read_documents(db: AsyncIOMotorDatabase[Any]) -> None:
    docs = [{"order_id": f"o{i}", "account_id": "a1", "qty": str(i), "ts": i} for i in range(50)]
    result = await db.orders.insert_many(docs)
    assert len(result.inserted_ids) == 50
    newest = await db.orders.find({"account_id": "a1"}, {"_id": 0}).sort("ts", -1).limit(3).to_list(None)
    assert [d["order_id"] for d in newest] == ["o49", "o48", "o47"]
    assert await db.orders.count_documents({"account_id": "a1"}) == 50


async def test_unique_index_refuses_a_duplicate_event(db: AsyncIOMotorDatabase[Any]) -> None:
    await db.events.create_index("event_id", unique=True)
    await db.events.insert_one({"event_id": "e1"})
    with pytest.raises(DuplicateKeyError):
        await db.events.insert_one({"event_id": "e1"})
    assert await db.events.count_documents({}) == 1


async def test_upsert_guarded_by_version_applies_only_newer(db: AsyncIOMotorDatabase[Any]) -> None:
    async def apply(version: int, status: str) -> None:
        # A newer version already stored makes the upsert's insert collide on _id: a no-op.
        with contextlib.suppress(DuplicateKeyError):
            await db.orders.update_one(
                {"_id": "o1", "version": {"$lt": version}},
                {"$set": {"version": version, "status": status}}, upsert=True,
            )
    await apply(2, "PARTIALLY_FILLED")
    await apply(1, "ACCEPTED")  # stale redelivery
    await apply(3, "FILLED")
    await apply(2, "PARTIALLY_FILLED")
    doc = await db.orders.find_one({"_id": "o1"})
    assert doc is not None and (doc["version"], doc["status"]) == (3, "FILLED")


async def test_a_bulk_of_many_replacements_completes(db: AsyncIOMotorDatabase[Any]) -> None:
    # FerretDB v1.24 held every update's read open until the whole command ended, and a
    # bulk of more than ~100 updates waited forever on its connection pool (patched in
    # deploy/local/infra.py); a real MongoDB does this in milliseconds.
    await db.orders.insert_many([{"_id": f"o{i}", "v": 1} for i in range(300)])
    ops = [ReplaceOne({"_id": f"o{i}", "v": 1}, {"v": 2}) for i in range(300)]
    result = await asyncio.wait_for(db.orders.bulk_write(ops, ordered=False), timeout=60)
    assert result.modified_count == 300
    assert await db.orders.count_documents({"v": 2}) == 300


async def test_id_lookups_return_exactly_the_matching_documents(db: AsyncIOMotorDatabase[Any]) -> None:
    # The local FerretDB answers these from its `_id` index (patched); the rest of the
    # filter must still apply.
    await db.orders.insert_many([{"_id": f"o{i}", "v": i % 3} for i in range(100)] + [{"_id": 7, "v": 0}])
    found = await db.orders.find({"_id": {"$in": ["o1", "o2", "o3", "nope"]}}).to_list(None)
    assert sorted(d["_id"] for d in found) == ["o1", "o2", "o3"]
    found = await db.orders.find({"_id": {"$in": ["o1", "o2", "o3"]}, "v": 2}).to_list(None)
    assert [d["_id"] for d in found] == ["o2"]
    assert await db.orders.find_one({"_id": "o5", "v": 0}) is None
    assert await db.orders.find_one({"_id": "o5", "v": 2}) == {"_id": "o5", "v": 2}
    assert await db.orders.find_one({"_id": 7}) == {"_id": 7, "v": 0}  # not a string: not from the index
    deleted = await db.orders.delete_many({"_id": {"$in": ["o10", "o11", "o12"]}, "v": {"$ne": 0}})
    assert deleted.deleted_count == 2  # o12 has v 0
    assert await db.orders.count_documents({}) == 99

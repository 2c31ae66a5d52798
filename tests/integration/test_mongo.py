"""MongoDB through motor against the MongoDB-wire server: what the collector relies on."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
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

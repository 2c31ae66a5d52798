"""MongoDB access through motor; only what MongoDB and FerretDB both support."""

from __future__ import annotations

from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase
from pymongo.errors import BulkWriteError

from orderstream.common.settings import ServiceSettings

DUPLICATE_KEY = 11000


def mongo_database(settings: ServiceSettings, **client_options: Any) -> AsyncIOMotorDatabase[Any]:
    """The service's database, with a bounded server selection time so a dead server fails fast."""
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(
        settings.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True, **client_options
    )
    return client[settings.mongo_database]


async def insert_new(collection: Any, docs: list[dict[str, Any]]) -> set[int]:
    """Insert `docs` unordered, one round trip; the indexes of those whose `_id` (or another unique
    key) was there already, which are left as they were. Any other write error is raised."""
    if not docs:
        return set()
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return {e["index"] for e in errors}
    return set()

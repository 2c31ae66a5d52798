"""MongoDB access through motor; only what MongoDB and FerretDB both support."""

from __future__ import annotations

from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from orderstream.common.settings import ServiceSettings


def mongo_database(settings: ServiceSettings, **client_options: Any) -> AsyncIOMotorDatabase[Any]:
    """The service's database, with a bounded server selection time so a dead server fails fast."""
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(
        settings.mongo_url, serverSelectionTimeoutMS=10_000, tz_aware=True, **client_options
    )
    return client[settings.mongo_database]

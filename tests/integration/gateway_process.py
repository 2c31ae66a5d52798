"""A gateway as it runs in production, for the integration tests: its own process, topics and database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from orderstream.client import GatewayClient as Client
from orderstream.common.topics import create_topics
from tests.conftest import Infra
from tests.e2e.stack import CODEC, instrument
from tests.kafka_tools import Worker, free_port, produce, unique_prefix

ADMIN = ("kadmin", "admin-secret-for-tests")


@asynccontextmanager
async def running_gateway(
    infra: Infra, tmp: Path, accounts: tuple[str, ...] = ("A", "B"), **env: str
) -> AsyncIterator[dict[str, Any]]:
    """A healthy gateway with BTC-USD listed and a key per account; `env` adds or overrides settings."""
    prefix, port, database = unique_prefix(), free_port(), f"gw{uuid.uuid4().hex[:8]}"
    await create_topics(infra.kafka_bootstrap, prefix=prefix, partitions=2)
    await produce(
        infra.kafka_bootstrap,
        prefix + "ref.instruments",
        [(b"BTC-USD", CODEC.encode(instrument("BTC-USD")), {})],
    )
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "MONGO_URL": infra.mongo_url,
        "ORDERSTREAM_TOPIC_PREFIX": prefix,
        "ORDERSTREAM_GATEWAY_WEB_PORT": str(port),
        "ORDERSTREAM_GATEWAY_DATA_DIR": str(tmp),
        "ORDERSTREAM_GATEWAY_MONGO_DATABASE": database,
        "ORDERSTREAM_GATEWAY_ADMIN_KEY_ID": ADMIN[0],
        "ORDERSTREAM_GATEWAY_ADMIN_SECRET": ADMIN[1],
        # no order path runs behind it: no report ever comes back, so no backpressure unless asked
        "ORDERSTREAM_GATEWAY_MAX_ORDERS_IN_FLIGHT": "1000000",
        "ORDERSTREAM_GATEWAY_FIX_PORT": "0",  # FIX order entry is tested on the whole platform
        **env,
    }
    worker = Worker("orderstream.gateway", settings, tmp / "gateway.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        await worker.wait_ready(base)
        async with aiohttp.ClientSession() as http:
            admin = Client(base, *ADMIN)
            keys = {}
            for account in accounts:
                status, _, body = await admin.call(
                    http, "POST", "/api/v1/admin/accounts", {"account_id": account}
                )
                assert status == 200 and "secret" in body, body
                keys[account] = Client(base, body["key_id"], body["secret"])
        yield {
            "base": base,
            "prefix": prefix,
            **keys,
            "admin": admin,
            "bootstrap": infra.kafka_bootstrap,
            "log": tmp / "gateway.log",
            "database": settings["ORDERSTREAM_GATEWAY_MONGO_DATABASE"],
            "order_database": settings.get("ORDERSTREAM_GATEWAY_ORDERS_DATABASE")
            or f"{settings['ORDERSTREAM_GATEWAY_MONGO_DATABASE']}_gateway",
        }
    finally:
        worker.stop()

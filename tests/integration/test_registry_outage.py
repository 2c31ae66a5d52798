"""A schema registry outage pauses a service; it never dead-letters valid records.

No Confluent Schema Registry runs on this machine (it is not on Maven Central), so the
registry here is a minimal one speaking the same REST API (register a subject version, get a
schema by id), served over HTTP by the test; the service talks to it with confluent-kafka's
own registry client."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orderstream.common.codec import AvroCodec
from orderstream.common.records import ALL_RECORDS
from orderstream.common.topics import create_topics
from tests.integration.test_service_template import submit
from tests.kafka_tools import Worker, free_port, produce, read, unique_prefix

pytestmark = pytest.mark.integration
JSON = "application/vnd.schemaregistry.v1+json"


class Registry:
    """Subjects and ids kept across restarts of the HTTP server, as a real registry keeps them."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.schemas: dict[int, str] = {}
        self.runner: web.AppRunner | None = None
        self.port = free_port()
        self.gets = 0

    async def register(self, request: web.Request) -> web.Response:
        body = await request.json()
        schema = body["schema"]
        if schema not in self.ids:
            self.ids[schema] = len(self.ids) + 1
            self.schemas[self.ids[schema]] = schema
        return web.json_response({"id": self.ids[schema]}, content_type=JSON)

    async def by_id(self, request: web.Request) -> web.Response:
        self.gets += 1
        found = self.schemas.get(int(request.match_info["id"]))
        if found is None:
            return web.json_response({"error_code": 40403, "message": "Schema not found"}, status=404)
        return web.json_response({"schema": found, "schemaType": "AVRO"}, content_type=JSON)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/subjects/{subject}/versions", self.register)
        app.router.add_get("/schemas/ids/{id}", self.by_id)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


async def test_records_wait_for_the_registry_and_none_is_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    registry = Registry()
    await registry.start()
    url = f"http://127.0.0.1:{registry.port}"
    codec = await asyncio.to_thread(AvroCodec, ALL_RECORDS, _ids(url))  # registers every schema
    prefix = unique_prefix()
    await create_topics(kafka_bootstrap, prefix=prefix, partitions=2)
    port = free_port()
    worker = Worker("tests.integration.probe_service", {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SCHEMA_REGISTRY_URL": url,
        "ORDERSTREAM_TOPIC_PREFIX": prefix, "ORDERSTREAM_PARTITIONS": "2",
        "ORDERSTREAM_PROBE_WEB_PORT": str(port), "ORDERSTREAM_PROBE_DATA_DIR": str(tmp_path / "faust"),
        "ORDERSTREAM_PROBE_SESSION_TIMEOUT_S": "6",
    }, tmp_path / "probe.log").start()
    try:
        await worker.wait_healthy(port)
        await registry.stop()  # the outage: the worker has not read a SubmitOrder's schema yet
        order = submit(9)
        await produce(kafka_bootstrap, prefix + "order.commands", [(b"acct-0", codec.encode(order), {})])
        for _ in range(60):
            if "schema registry unreachable" in worker.tail(200):
                break
            await asyncio.sleep(0.5)
        assert "schema registry unreachable" in worker.tail(200), worker.tail()
        assert await read(kafka_bootstrap, prefix + "order.events", 1, timeout=3) == []
        await registry.start()  # back: the waiting record is handled, nothing was discarded
        events = await read(kafka_bootstrap, prefix + "order.events", 1)
        # the codec asks the registry synchronously, and the registry is served by this loop
        decoded = [await asyncio.to_thread(codec.decode, m.value) for m in events]
        assert [e.order_id for e in decoded] == [order.order_id]  # type: ignore[attr-defined]
        assert await read(kafka_bootstrap, prefix + "order.commands.dlq", 1, timeout=3) == []
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.stop()
        await registry.stop()


def _ids(url: str) -> Any:
    from orderstream.common.codec import schema_ids

    return schema_ids(url)

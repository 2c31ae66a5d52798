"""The collector worker on the real broker and the MongoDB-wire server: exact, idempotent, crash-safe."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from motor.motor_asyncio import AsyncIOMotorClient

from orderstream.common.codec import AvroCodec, schema_ids
from orderstream.common.records import ALL_RECORDS
from orderstream.common.topics import create_topics
from tests.kafka_tools import Worker, eventually, free_port, produce, read, unique_prefix
from tests.reports import lifecycle

pytestmark = pytest.mark.integration
CODEC = AvroCodec(ALL_RECORDS, schema_ids(None))


async def test_reports_in_documents_out_across_redelivery_and_a_hard_kill(
    kafka_bootstrap: str, mongo_url: str, tmp_path: Path
) -> None:
    prefix = unique_prefix()
    await create_topics(kafka_bootstrap, prefix=prefix, partitions=2)
    dbname = f"coll_{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MONGO_URL": mongo_url,
           "ORDERSTREAM_TOPIC_PREFIX": prefix, "ORDERSTREAM_PARTITIONS": "2",
           "ORDERSTREAM_COLLECTOR_MONGO_DATABASE": dbname, "ORDERSTREAM_COLLECTOR_WEB_PORT": str(port),
           "ORDERSTREAM_COLLECTOR_DATA_DIR": str(tmp_path / "faust"),
           "ORDERSTREAM_COLLECTOR_SESSION_TIMEOUT_S": "6", "ORDERSTREAM_COLLECTOR_BATCH_SIZE": "50"}
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(mongo_url)
    db = client[dbname]
    reports = lifecycle(400, account="acct-1") + lifecycle(200, start=1000, account="acct-2")[:-1]
    topic = prefix + "execution.reports"
    items = [(rep.account_id.encode(), CODEC.encode(rep), {}) for rep in reports]
    try:
        worker = Worker("orderstream.collector", env, tmp_path / "collector-1.log").start()
        await worker.wait_healthy(port)
        sending = asyncio.create_task(produce(kafka_bootstrap, topic, [
            (b"acct-1", b"not avro", {}), *items]))

        async def some_written() -> bool:
            return await db.order_events.count_documents({}) > 100

        await eventually("some documents written", some_written)
        worker.stop(signal.SIGKILL)  # mid-stream: batches in flight, offsets not all committed
        written_at_kill = await db.order_events.count_documents({})
        await sending
        assert written_at_kill < len(reports), "the kill must land before everything is written"

        # restarted, it carries on from its committed offsets alone: nothing is sent again, so a
        # record lost across the kill would stay missing
        worker = Worker("orderstream.collector", env, tmp_path / "collector-2.log").start()
        await worker.wait_healthy(port)

        async def all_written() -> bool:
            return await db.order_events.count_documents({}) >= len(reports)

        await eventually("every document written", all_written)
        events = await db.order_events.find({}, {"_id": 1}).to_list(None)
        assert sorted(e["_id"] for e in events) == sorted(rep.event_id for rep in reports)

        # then a redelivery storm (the first half again, and one order's reports backwards): no
        # document changes, no order goes back to an older state
        storm = items[: len(items) // 2] + list(reversed(items[:8]))
        await produce(kafka_bootstrap, topic, storm)
        # one more order per account, handled after the storm (same keys, same partitions)
        marker = lifecycle(1, start=5000, account="acct-1") + lifecycle(1, start=6000, account="acct-2")
        await produce(kafka_bootstrap, topic, [(rep.account_id.encode(), CODEC.encode(rep), {})
                                               for rep in marker])

        async def marker_written() -> bool:
            last = [rep.event_id for rep in marker if rep.sequence == 3]
            return await db.order_events.count_documents({"_id": {"$in": last}}) == 2

        await eventually("the markers written", marker_written)
        events = await db.order_events.find({}, {"_id": 1}).to_list(None)
        assert sorted(e["_id"] for e in events) == sorted(rep.event_id for rep in reports + marker)
        orders = {d["_id"]: d for d in await db.trader_orders.find({}).to_list(None)}
        assert len(orders) == 602
        for rep in marker:
            orders.pop(rep.order_id, None)
        open_one = orders.pop("o1199")  # its last report was never sent
        assert (open_one["status"], open_one["sequence"], open_one["action"]) == ("PARTIALLY_FILLED", 2,
                                                                                  "updated")
        assert all(d["status"] == "FILLED" and d["action"] == "closed" for d in orders.values())
        # At least once: redelivered after the kill, the bad record may be dead-lettered again,
        # always as the same record from the same source offset.
        dlq = await read(kafka_bootstrap, topic + ".dlq", 10, timeout=3)
        assert dlq and {m.value for m in dlq} == {b"not avro"}
        assert len({dict(m.headers)["x-dlq-source-offset"] for m in dlq}) == 1
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            health = await resp.json()
        assert health["status"] == "ok" and "documents_written" in health
        assert worker.stop() == 0, worker.tail()
    finally:
        await client.drop_database(dbname)
        client.close()

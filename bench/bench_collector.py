"""Benchmark: execution reports into MongoDB.

Two workloads of N reports (orders going ACCEPTED -> PARTIALLY_FILLED -> FILLED):
- "together": each order's three reports are consecutive, so most orders are born and
  finished within one batch and their `trader_orders` document is written once;
- "spread": the reports come in waves over blocks of 3,000 orders, so each order's three
  reports fall in three different batches: one insert and two replacements per order
  (the worst case for `trader_orders`).

1. Store: `write_batch` (order_events + trader_orders, idempotent) in batches of 2,000,
   beside a bare `insert_many` of the same event documents into a collection without
   indexes, in the same run.
2. Service: the reports preloaded on execution.reports; one collector worker drains them
   into MongoDB: reports/s from its first to its last document.
3. Flush latency: single reports sent 50 ms apart; time from send until the document
   is in MongoDB, p50/p99 (bounded below by the flush interval).

Uses KAFKA_BOOTSTRAP_SERVERS / MONGO_URL, else the local servers (deploy/local/infra.py).
Run: make bench   (or python bench/bench_collector.py --reports 50000)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from confluent_kafka import Producer
from motor.motor_asyncio import AsyncIOMotorClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kafka_tools import free_port  # noqa: E402
from tests.reports import lifecycle, report  # noqa: E402

from bench.servers import servers  # noqa: E402
from orderstream.collector.documents import event_document  # noqa: E402
from orderstream.collector.store import ensure_indexes, write_batch  # noqa: E402
from orderstream.common import records as r  # noqa: E402
from orderstream.common.codec import AvroCodec, schema_ids  # noqa: E402
from orderstream.common.records import ALL_RECORDS  # noqa: E402
from orderstream.common.topics import create_topics  # noqa: E402

CODEC = AvroCodec(ALL_RECORDS, schema_ids(None))


WORKLOADS = ("together", "spread")
WAVE = 3_000  # orders per block in the spread workload


def workload(n: int, kind: str) -> list[r.ExecutionReport]:
    """About n reports over two accounts, in the order of the named workload."""
    orders = n // 6
    if kind == "together":
        return lifecycle(orders, account="acct-1") + lifecycle(orders, start=10**6, account="acct-2")
    out = []
    for account, base in (("acct-1", 0), ("acct-2", 10**6)):
        for block in range(base, base + orders, WAVE):
            end = min(block + WAVE, base + orders)
            out += [report(o, s, account=account) for s in (1, 2, 3) for o in range(block, end)]
    return out


async def store_phase(mongo: str, n: int, batch: int) -> None:
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(mongo)
    names = [f"bench_{uuid.uuid4().hex[:6]}" for _ in range(3)]
    try:
        loads = {kind: workload(n, kind) for kind in WORKLOADS}
        for kind, name in zip(WORKLOADS, names, strict=False):
            reports = loads[kind]
            await ensure_indexes(client[name])
            t0 = time.perf_counter()
            for i in range(0, len(reports), batch):
                await write_batch(client[name], list(reports[i:i + batch]))
            print(f"store, {kind}: {len(reports):,} reports in batches of {batch}: write_batch "
                  f"{len(reports) / (time.perf_counter() - t0):,.0f} reports/s "
                  "(order_events + trader_orders, idempotent)", flush=True)
        docs = [event_document(x) for x in loads["together"]]
        t0 = time.perf_counter()
        for i in range(0, len(docs), batch):
            await client[names[2]].events.insert_many(docs[i:i + batch], ordered=False)
        print(f"store, baseline: bare insert_many of the same {len(docs):,} event documents "
              f"{len(docs) / (time.perf_counter() - t0):,.0f} docs/s (one collection, no index)", flush=True)
    finally:
        for name in names:
            await client.drop_database(name)
        client.close()


async def written(http: aiohttp.ClientSession, port: int) -> int:
    """order_events documents the worker reports written (0 until its web server is up)."""
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            body = await resp.json(content_type=None)
    except aiohttp.ClientError:
        return 0
    return int(body.get("documents_written", {}).get("order_events", 0))


async def service_phase(kafka: str, mongo: str, n: int, kind: str, latency: bool) -> None:
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    await create_topics(kafka, prefix=prefix, partitions=4)
    reports = workload(n, kind)
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 5, "partitioner": "murmur2_random",
                         "queue.buffering.max.messages": 1_000_000})
    for rep in reports:
        producer.produce(prefix + "execution.reports", CODEC.encode(rep), rep.account_id.encode())
        producer.poll(0)
    producer.flush()
    dbname = f"bench_{uuid.uuid4().hex[:6]}"
    port, tmp = free_port(), tempfile.mkdtemp()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "MONGO_URL": mongo,
           "ORDERSTREAM_TOPIC_PREFIX": prefix, "ORDERSTREAM_PARTITIONS": "4",
           "ORDERSTREAM_COLLECTOR_MONGO_DATABASE": dbname,
           "ORDERSTREAM_COLLECTOR_WEB_PORT": str(port), "ORDERSTREAM_COLLECTOR_DATA_DIR": tmp}
    log = open(Path(tmp) / "collector.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "orderstream.collector", "worker", "-l", "warn"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(mongo)
    db = client[dbname]
    try:
        # Progress comes from the worker's own counter (/healthz): a `count` on FerretDB
        # reads and decodes every stored document, and polling it would slow the drain.
        first = last = None
        deadline = time.monotonic() + 600
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if worker.poll() is not None:
                    raise SystemExit(f"collector exited with {worker.returncode}; log in {tmp}")
                count = await written(http, port)
                now = time.monotonic()
                if count and first is None:
                    first = (now, count)
                if count >= len(reports):
                    last = now
                    break
                await asyncio.sleep(0.05)
        assert first is not None and last is not None
        stored = await db.order_events.count_documents({})
        assert stored == len(reports), f"{stored} event documents for {len(reports)} reports"
        rate = (len(reports) - first[1]) / (last - first[0])
        print(f"service, {kind}: {len(reports):,} reports drained by one collector worker: "
              f"{rate:,.0f} reports/s (goal 20,000/s)", flush=True)
        if not latency:
            return
        lat = []
        for i in range(200):
            rep = report(5 * 10**6 + i, 1, account="acct-3")
            t0 = time.monotonic()
            producer.produce(prefix + "execution.reports", CODEC.encode(rep), b"acct-3")
            producer.flush()
            while await db.order_events.find_one({"_id": rep.event_id}, {"_id": 1}) is None:
                await asyncio.sleep(0.002)
            lat.append(time.monotonic() - t0)
            await asyncio.sleep(0.05)
        lat.sort()
        print(f"flush latency (flush interval 0.2 s): send-to-document p50 {lat[100] * 1000:.0f} ms, "
              f"p99 {lat[197] * 1000:.0f} ms", flush=True)
    finally:
        worker.terminate()
        worker.wait(30)
        await client.drop_database(dbname)
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=120_000)
    ap.add_argument("--batch", type=int, default=2_000)
    args = ap.parse_args()
    found = servers()
    kafka, mongo = found["KAFKA_BOOTSTRAP_SERVERS"], found["MONGO_URL"]
    asyncio.run(store_phase(mongo, args.reports, args.batch))
    for kind in WORKLOADS:
        asyncio.run(service_phase(kafka, mongo, args.reports, kind, latency=kind == WORKLOADS[-1]))


if __name__ == "__main__":
    main()

"""Gateway benchmarks: orders accepted per second, idle WebSocket connections, market-data fan-out.

One gateway process against the real broker and MongoDB-wire server; the
clients are real aiohttp WebSocket clients in this process. The fan-out
baseline is a bare aiohttp server that sends the same frames to the same number
of clients, measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import servers
from orderstream.client import sign
from orderstream.common import records as r
from orderstream.common.codec import AvroCodec, schema_ids
from orderstream.common.records import ALL_RECORDS
from orderstream.common.topics import create_topics

CODEC = AvroCodec(ALL_RECORDS, schema_ids(None))
ORDERS = int(os.environ.get("BENCH_ORDERS", "20000"))
CLIENTS = 20
PACED_S = 5.0
PACED_RATE = 2000.0
IDLE = int(os.environ.get("BENCH_IDLE_CONNECTIONS", "10000"))
SUBSCRIBERS = 1000
UPDATES = 200
ADMIN = ("kbench", "bench-secret")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


LAST_STAMP = [0]


async def login(ws: aiohttp.ClientWebSocketResponse, key: str, secret: str) -> None:
    # many logins with one key in the same millisecond would be the same signed request (a replay)
    LAST_STAMP[0] = max(int(time.time() * 1000), LAST_STAMP[0] + 1)
    stamp = str(LAST_STAMP[0])
    await ws.send_json(
        {
            "id": 0,
            "method": "auth.login",
            "params": {"key": key, "timestamp": stamp, "signature": sign(secret, stamp, "GET", "/ws", b"")},
        }
    )
    answer = await ws.receive_json()
    assert "result" in answer, answer


async def orders_per_second(
    base: str, key: str, secret: str, bootstrap: str, prefix: str, rate: float | None = None, tag: str = "b"
) -> dict[str, float]:
    """All orders at once (rate None: the most one process accepts), or paced at `rate` orders/s in all."""
    sent: dict[str, int] = {}
    per_client = ORDERS // CLIENTS if rate is None else int(rate * PACED_S) // CLIENTS

    async def client(n: int, http: aiohttp.ClientSession) -> int:
        async with http.ws_connect(base + "/ws") as ws:
            await login(ws, key, secret)
            t0 = time.perf_counter()
            for i in range(per_client):
                if rate is not None:  # each client sends its share on a schedule
                    delay = t0 + i * CLIENTS / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                cid = f"{tag}{n}-{i}"
                sent[cid] = time.time_ns()
                await ws.send_json(
                    {
                        "id": i,
                        "method": "order.place",
                        "params": {
                            "client_order_id": cid,
                            "symbol": "BTC-USD",
                            "side": "BUY",
                            "quantity": "0.01",
                            "price": str(20000 + i % 100),
                        },
                    }
                )
            ok = 0
            for _ in range(per_client):
                ok += "result" in await ws.receive_json()
            return ok

    async with aiohttp.ClientSession() as http:
        start = time.perf_counter()
        accepted = sum(await asyncio.gather(*(client(n, http) for n in range(CLIENTS))))
        elapsed = time.perf_counter() - start
    consumer = AIOKafkaConsumer(
        prefix + "order.commands",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    latencies: list[float] = []
    try:
        while len(latencies) < accepted:
            batch = await consumer.getmany(timeout_ms=2000)
            if not batch:
                break
            for msgs in batch.values():
                for m in msgs:
                    cmd = CODEC.decode(m.value)
                    if isinstance(cmd, r.SubmitOrder) and cmd.client_order_id in sent:
                        latencies.append((m.timestamp * 1e6 - sent[cmd.client_order_id]) / 1e6)
    finally:
        await consumer.stop()
    latencies.sort()
    return {
        "accepted": accepted,
        "orders_per_s": accepted / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
    }


async def idle_connections(base: str, pid: int) -> dict[str, float]:
    before = rss_kib(pid)
    conns = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        for i in range(0, IDLE, 500):
            conns += await asyncio.gather(
                *(http.ws_connect(base + "/ws", heartbeat=None) for _ in range(min(500, IDLE - i)))
            )
        await asyncio.sleep(2)
        async with http.get(base + "/healthz") as resp:
            held = (await resp.json())["connections"]
        after = rss_kib(pid)
        alive = sum(not c.closed for c in conns)
        await asyncio.gather(*(c.close() for c in conns))
    return {
        "open": alive,
        "registered_after_login": held,
        "kib_per_connection": (after - before) / max(alive, 1),
        "rss_mib": after / 1024,
    }


async def fanout_gateway(base: str, key: str, secret: str, bootstrap: str, prefix: str) -> float:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        conns = await asyncio.gather(*(http.ws_connect(base + "/ws") for _ in range(SUBSCRIBERS)))
        for ws in conns:
            await login(ws, key, secret)
            await ws.send_json(
                {"id": 1, "method": "subscribe", "params": {"stream": "market", "symbol": "BTC-USD"}}
            )
            await ws.receive_json()
        await asyncio.sleep(1)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        level = r.PriceLevel(side="BID", price=Decimal(30000), quantity=Decimal(1))
        start = time.perf_counter()
        for seq in range(1, UPDATES + 1):
            update = r.BookUpdate(symbol="BTC-USD", ts_event=seq, sequence=10**6 + seq, changes=[level])
            await producer.send(prefix + "md.book", CODEC.encode(update), key=b"BTC-USD")
        await producer.flush()
        await asyncio.gather(*(receive(ws, UPDATES) for ws in conns))
        elapsed = time.perf_counter() - start
        await producer.stop()
        await asyncio.gather(*(c.close() for c in conns))
    return SUBSCRIBERS * UPDATES / elapsed


async def receive(ws: aiohttp.ClientWebSocketResponse, n: int) -> None:
    for _ in range(n):
        await ws.receive_str()


BARE_SERVER = """
import asyncio, json, sys
from aiohttp import web
clients, n = [], int(sys.argv[2])
frame = json.dumps({"stream": "market", "type": "book", "symbol": "BTC-USD", "data": {
    "symbol": "BTC-USD", "sequence": 1, "changes": [{"side": "BID", "price": "30000", "quantity": "1"}]}})
async def handler(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    clients.append(ws)
    async for msg in ws:
        if msg.data == "go":
            for _ in range(n):
                for c in clients:
                    await c.send_str(frame)
    return ws
app = web.Application()
app.router.add_get("/ws", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def fanout_bare() -> float:
    """The baseline: a bare aiohttp server in its own process sending the same frames to as many clients."""
    port = 18081
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port), str(UPDATES)])
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(100):
                try:
                    conns = [await http.ws_connect(f"http://127.0.0.1:{port}/ws")]
                    break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            conns += await asyncio.gather(
                *(http.ws_connect(f"http://127.0.0.1:{port}/ws") for _ in range(SUBSCRIBERS - 1))
            )
            await asyncio.sleep(1)
            start = time.perf_counter()
            await conns[0].send_str("go")
            await asyncio.gather(*(receive(ws, UPDATES) for ws in conns))
            elapsed = time.perf_counter() - start
            await asyncio.gather(*(c.close() for c in conns))
    finally:
        proc.terminate()
        proc.wait(10)
    return SUBSCRIBERS * UPDATES / elapsed


async def main() -> None:
    env = servers("kafka", "mongo")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    await create_topics(bootstrap, prefix=prefix, partitions=4)
    from orderstream.common.records import Instrument

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    await producer.send_and_wait(
        prefix + "ref.instruments",
        CODEC.encode(
            Instrument(
                symbol="BTC-USD",
                base_asset="BTC",
                quote_asset="USD",
                tick_size=Decimal("0.5"),
                lot_size=Decimal("0.001"),
                min_quantity=Decimal("0.001"),
                min_notional=Decimal(1),
                maker_fee=Decimal("0.001"),
                taker_fee=Decimal("0.002"),
                venue="INTERNAL",
            )
        ),
        key=b"BTC-USD",
    )
    await producer.stop()
    port = 18080
    gw_env = {
        **os.environ,
        **env,
        "ORDERSTREAM_TOPIC_PREFIX": prefix,
        "ORDERSTREAM_GATEWAY_WEB_PORT": str(port),
        "ORDERSTREAM_GATEWAY_DATA_DIR": f"/tmp/{prefix}",
        "ORDERSTREAM_GATEWAY_MONGO_DATABASE": prefix[:-1],
        "ORDERSTREAM_GATEWAY_ADMIN_KEY_ID": ADMIN[0],
        "ORDERSTREAM_GATEWAY_ADMIN_SECRET": ADMIN[1],
        "ORDERSTREAM_GATEWAY_ORDERS_PER_S": "1000000",
        "ORDERSTREAM_GATEWAY_ORDERS_BURST": "1000000",
        "ORDERSTREAM_GATEWAY_MAX_ORDERS_IN_FLIGHT": "1000000",  # no order path behind it: no report comes
        "ORDERSTREAM_GATEWAY_WS_SEND_QUEUE": "100000",
        "ORDERSTREAM_GATEWAY_FIX_PORT": "0",
        "ORDERSTREAM_GATEWAY_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "orderstream.gateway"], env=gw_env)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(120):
                try:
                    async with http.get(base + "/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        key, secret = ADMIN
        o = await orders_per_second(base, key, secret, bootstrap, prefix)
        print(
            f"orders accepted by one gateway: {o['accepted']} in {o['orders_per_s']:,.0f} orders/s "
            f"({CLIENTS} WebSocket clients, all sent at once); request to broker "
            f"p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms, queueing included "
            f"(goal 5,000/s)"
        )
        paced = await orders_per_second(base, key, secret, bootstrap, prefix, rate=PACED_RATE, tag="p")
        print(
            f"paced at {PACED_RATE:,.0f} orders/s for {PACED_S:.0f} s: {paced['accepted']} accepted; "
            f"request to broker p50 {paced['p50_ms']:.1f} ms, p99 {paced['p99_ms']:.1f} ms"
        )
        idle = await idle_connections(base, proc.pid)
        print(
            f"idle WebSocket connections held: {idle['open']:,} of {IDLE:,}; "
            f"gateway RSS {idle['rss_mib']:.0f} MiB, "
            f"{idle['kib_per_connection']:.1f} KiB per connection (goal 10,000)"
        )
        gw = await fanout_gateway(base, key, secret, bootstrap, prefix)
        bare = await fanout_bare()
        print(
            f"market-data fan-out to {SUBSCRIBERS} subscribers, {UPDATES} book updates: "
            f"gateway {gw:,.0f} msgs/s "
            f"(broker to client) vs bare aiohttp send loop {bare:,.0f} msgs/s, same run"
        )
    finally:
        proc.terminate()
        proc.wait(20)


if __name__ == "__main__":
    asyncio.run(main())

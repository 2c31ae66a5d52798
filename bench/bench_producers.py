"""What a service step's writes cost the broker and the service: librdkafka against aiokafka.

A step of a service writes a few records to different topics (outputs, changelog). This bench
sends groups of `--group` records, one to each of as many partitions, at `--rates` groups a second
for `--seconds`, through librdkafka (confluent-kafka: one produce request per partition) and through
aiokafka (one request per broker), each with the services' settings (idempotent, acks=all, linger
0.5 ms), while an aiokafka consumer in the same process reads them back. It prints the broker's CPU
(the Kafka process, from /proc) and this process's CPU (the client: producer and consumer) per
second, the clients taking turns for `--rounds` rounds so that both see the same broker.

    .venv/bin/python bench/bench_producers.py [--rates 100,400] [--group 4] [--seconds 15] [--rounds 2]

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts the local Kafka (and stops it after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.kafka_tools import new_topic

from bench.bench_chain import cpu_ticks, platform_processes
from bench.servers import servers

TICK = os.sysconf("SC_CLK_TCK")


async def one(bootstrap: str, kafka_pid: int, kind: str, rate: float, group: int, seconds: float) -> str:
    topic = await new_topic(bootstrap, "bench-producers", group)
    send: Callable[[int], Awaitable[None]]
    if kind == "librdkafka":
        rd = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0.5, "acks": "all",
                       "enable.idempotence": True, "socket.nagle.disable": True})

        async def send(partition: int) -> None:
            rd.produce(topic, b"x" * 200, partition=partition)
            rd.poll(0)
    else:
        aio = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                               linger_ms=0.5)
        await aio.start()

        async def send(partition: int) -> None:
            await aio.send(topic, b"x" * 200, partition=partition)

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="latest",
                                fetch_max_wait_ms=100)
    await consumer.start()
    await asyncio.sleep(2)
    got = 0

    async def consume() -> None:
        nonlocal got
        while True:
            got += sum(len(v) for v in (await consumer.getmany(timeout_ms=200)).values())

    reader = asyncio.ensure_future(consume())
    kafka0, me0, t0 = cpu_ticks(kafka_pid) or 0, cpu_ticks(os.getpid()) or 0, time.time()
    groups = 0
    while time.time() - t0 < seconds:
        for partition in range(group):
            await send(partition)
        groups += 1
        await asyncio.sleep(max(0.0, t0 + groups / rate - time.time()))
    if kind == "librdkafka":
        rd.flush()
    else:
        await aio.flush()
    await asyncio.sleep(1)
    elapsed = time.time() - t0
    kafka_ms = ((cpu_ticks(kafka_pid) or 0) - kafka0) / TICK * 1000 / elapsed
    client_ms = ((cpu_ticks(os.getpid()) or 0) - me0) / TICK * 1000 / elapsed
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    await consumer.stop()
    if kind != "librdkafka":
        await aio.stop()
    received = f"{got:>7}/{groups * group:<7}"
    return f"{kind:<11} {rate:>7.0f} x {group}  {received} {kafka_ms:>9.0f} {client_ms:>10.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="100,400")
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bootstrap = servers("kafka")["KAFKA_BOOTSTRAP_SERVERS"]
    kafka = platform_processes()["kafka"]
    if not kafka:
        sys.exit("no local Kafka process to measure (this bench reads its CPU from /proc)")
    print("client      groups/s x n  received    kafka ms/s  client ms/s")
    await one(bootstrap, kafka[0], "aiokafka", 200, args.group, 5)  # warm the broker's JIT first
    for rate in (float(r) for r in args.rates.split(",")):
        for _ in range(args.rounds):
            for kind in ("librdkafka", "aiokafka"):
                print(await one(bootstrap, kafka[0], kind, rate, args.group, args.seconds), flush=True)


if __name__ == "__main__":
    asyncio.run(main())

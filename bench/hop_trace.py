"""Where an order's time goes, hop by hop: the order path's topics read side by side.

Every record on the order path carries the time its producer handed it over (Kafka's
CreateTime). This reads order.commands, order.funded, match.commands, order.events and
execution.reports from their ends for `--seconds`, matches the records of each order by
order id (its first record on each topic) and prints, per hop, the time from the record
on one topic to the record on the next: the next service's fetch, its handling and its
producer's hand-over. `observe` is this reader's own delay (report stored to read here),
`total` the order's time from the gateway's send to execution's report.

Run it beside load, e.g. a platform `make up` started and
`bench/bench_chain.py --use-running --no-bare --rates 10 --shapes sparse --seconds 60`:

    .venv/bin/python bench/hop_trace.py --seconds 30

CreateTime has millisecond resolution: quote medians over hundreds of orders.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_chain import pct
from orderstream.common.codec import AvroCodec, DecodeError, schema_ids
from orderstream.common.records import ALL_RECORDS

PATH = ("order.commands", "order.funded", "match.commands", "order.events", "execution.reports")


async def trace(bootstrap: str, prefix: str, seconds: float) -> dict[str, list[float]]:
    """Per hop (and `observe`, `total`), the times of the orders seen on every topic of the path."""
    codec = AvroCodec(ALL_RECORDS, schema_ids(None))
    topics = [prefix + t for t in PATH]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                                enable_auto_commit=False)
    await consumer.start()
    seen: dict[str, dict[str, tuple[int, float]]] = {}  # order id -> topic -> (CreateTime, read at)
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            fetched = await consumer.getmany(timeout_ms=200)
            read_at = time.time() * 1000
            for tp, records in fetched.items():
                topic = tp.topic[len(prefix):]
                for record in records:
                    try:
                        decoded = codec.decode(record.value)
                    except DecodeError:
                        continue
                    order_id = getattr(decoded, "order_id", None)
                    if isinstance(order_id, str):
                        seen.setdefault(order_id, {}).setdefault(topic, (record.timestamp, read_at))
    finally:
        await consumer.stop()
    hops: dict[str, list[float]] = {}
    for times in seen.values():
        if not all(t in times for t in PATH):
            continue  # seen on part of the path only (started or ended outside the window)
        for a, b in itertools.pairwise(PATH):
            hops.setdefault(f"{a} -> {b}", []).append(times[b][0] - times[a][0])
        last = times[PATH[-1]]
        hops.setdefault("observe (report stored -> read here)", []).append(last[1] - last[0])
        hops.setdefault("total (order.commands -> execution.reports)", []).append(
            last[0] - times[PATH[0]][0])
    return hops


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"))
    parser.add_argument("--prefix", default=os.environ.get("ORDERSTREAM_TOPIC_PREFIX", ""))
    args = parser.parse_args()
    hops = asyncio.run(trace(args.bootstrap, args.prefix, args.seconds))
    if not hops:
        print("no order crossed the whole path while this read; is load running?", file=sys.stderr)
        sys.exit(1)
    print(f"{'hop (ms, CreateTime to CreateTime)':52} {'orders':>7} {'p50':>7} {'p90':>7} {'p99':>7}")
    for name, values in hops.items():
        values.sort()
        p50, p90, p99 = (pct(values, q) or 0.0 for q in (50, 90, 99))
        print(f"{name:52} {len(values):7d} {p50:7.1f} {p90:7.1f} {p99:7.1f}")


if __name__ == "__main__":
    main()

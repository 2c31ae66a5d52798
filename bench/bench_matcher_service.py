"""Benchmark: one matcher worker through the real broker.

1. Throughput: N commands (the mixed workload of bench_book.py, over 8 symbols)
   are written to match.commands first; then one worker starts and drains them.
   Commands/s = N / (time of the last order event - time of the first).
   Beside it, in the same run, the worker's own work per command without Kafka or
   Faust, in this process: decode, match, encode the records, build the change
   record and its table writes; and the match alone. That is the ceiling for a
   worker, whatever the transport does.
2. Latency: with the worker running, commands are sent at a fixed rate; the
   latency of a command is from its send to the arrival of its first order
   event (matched by event id `<command_id>:0`), p50/p99.
3. The floor (bench/faust_floor.py): the same commands drained by a worker that
   does nothing with them: aiokafka's getmany alone, a bare stock Faust agent, the
   services' delivery path with a route that does nothing, and the service template
   with a handler that does nothing.

Uses KAFKA_BOOTSTRAP_SERVERS, else starts the local broker (deploy/local/infra.py).
Run: make bench   (or python bench/bench_matcher_service.py --commands 50000)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from orderstream.common import records as r
from orderstream.common.codec import AvroCodec, schema_ids
from orderstream.common.records import ALL_RECORDS
from orderstream.matcher.domain.engine import Matcher
from orderstream.matcher.state import command_writes, record_change

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kafka_tools import free_port  # noqa: E402
from tests.matcher_workload import instrument  # noqa: E402

from bench.bench_book import Op, workload  # noqa: E402
from bench.servers import servers  # noqa: E402

CODEC = AvroCodec(ALL_RECORDS, schema_ids(None))
SYMBOLS = tuple(f"SYM{i}-USD" for i in range(8))
TICK, LOT = Decimal("0.5"), Decimal("0.001")


def bootstrap() -> str:
    return servers("kafka")["KAFKA_BOOTSTRAP_SERVERS"]


def to_command(op: Op, n: int, tag: str) -> r.SubmitOrder | r.CancelOrder:
    symbol = SYMBOLS[hash(op.order_id) % len(SYMBOLS)]
    base = {"ts_event": time.time_ns(), "account_id": op.order_id, "order_id": op.order_id,
            "client_order_id": op.order_id, "symbol": symbol}
    if op.kind == "cancel":
        return r.CancelOrder(command_id=f"{tag}-{n}", **base)
    return r.SubmitOrder(
        command_id=f"{tag}-{n}", **base, side="BUY" if op.is_buy else "SELL",
        order_type="MARKET" if op.kind == "market" else "LIMIT",
        time_in_force="GTC" if op.kind == "add" else "IOC", quantity=op.qty * LOT,
        price=None if op.price is None else op.price * TICK)


def in_process(encoded: list[bytes]) -> tuple[float, float]:
    """Commands/s of the worker's own work without Kafka or Faust, and of the match alone."""
    matcher = fresh_matcher()
    seqs: dict[str, int] = {}
    t0 = time.perf_counter()
    for data in encoded:
        cmd: Any = CODEC.decode(data)
        out = [(o.topic, o.key, CODEC.encode(o.record)) for o in matcher.handle(cmd, time.time_ns())]
        seqs[cmd.symbol] = seq = seqs.get(cmd.symbol, 0) + 1
        command_writes(cmd.command_id, record_change(cmd.symbol, matcher.books.get(cmd.symbol), seq, out))
    full = len(encoded) / (time.perf_counter() - t0)
    matcher, cmds = fresh_matcher(), [CODEC.decode(data) for data in encoded]
    t0 = time.perf_counter()
    for cmd in cmds:
        matcher.handle(cmd, time.time_ns())  # type: ignore[arg-type]
    return full, len(encoded) / (time.perf_counter() - t0)


def fresh_matcher() -> Matcher:
    matcher = Matcher()
    for sym in SYMBOLS:
        matcher.set_instrument(instrument(sym))
    return matcher


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commands", type=int, default=50_000)
    ap.add_argument("--rate", type=int, default=1_000, help="commands/s of the latency phase")
    ap.add_argument("--seconds", type=int, default=10, help="length of the latency phase")
    args = ap.parse_args()
    boot = bootstrap()
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    import asyncio

    from orderstream.common.topics import create_topics
    asyncio.run(create_topics(boot, prefix=prefix, partitions=4))
    producer = Producer({"bootstrap.servers": boot, "linger.ms": 5, "acks": "all",
                         "partitioner": "murmur2_random", "queue.buffering.max.messages": 1_000_000})
    for s in SYMBOLS:
        producer.produce(prefix + "ref.instruments", CODEC.encode(instrument(s)), s.encode())
    prefill, ops = workload(args.commands)
    cmds = [to_command(op, i, "pre") for i, op in enumerate(prefill + ops)]
    for c in cmds:
        producer.produce(prefix + "match.commands", CODEC.encode(c), c.symbol.encode())
        producer.poll(0)
    producer.flush()
    print(f"loaded {len(cmds):,} commands on {len(SYMBOLS)} symbols, 4 partitions")
    full, match_only = in_process([CODEC.encode(c) for c in cmds])
    print(f"in-process, no Kafka, no Faust: decode + match + encode + change record {full:,.0f} commands/s; "
          f"the match alone {match_only:,.0f} commands/s")

    port = free_port()
    tmp = tempfile.mkdtemp()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": boot, "ORDERSTREAM_TOPIC_PREFIX": prefix,
           "ORDERSTREAM_PARTITIONS": "4", "ORDERSTREAM_MATCHER_WEB_PORT": str(port),
           "ORDERSTREAM_MATCHER_DATA_DIR": tmp, "ORDERSTREAM_MATCHER_LOG_LEVEL": "WARNING"}
    log = open(Path(tmp) / "matcher.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "orderstream.matcher", "worker", "-l", "warn"],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    consumer = Consumer({"bootstrap.servers": boot, "group.id": f"bench-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([prefix + "order.events"])
    try:
        first = last = None
        want = {c.command_id for c in cmds}
        seen: set[str] = set()
        deadline = time.monotonic() + 600
        while want - seen and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise SystemExit(f"the matcher worker exited with {worker.returncode}; log in {tmp}")
            for msg in consumer.consume(10_000, 1.0):
                if msg.error():
                    continue
                now = time.monotonic()
                cid = CODEC.decode(msg.value()).event_id.rsplit(":", 1)[0]  # type: ignore[attr-defined]
                if cid in want and cid not in seen:
                    seen.add(cid)
                    first = first or now
                    last = now
        assert first is not None and last is not None
        drained = len(seen) / (last - first)
        print(f"throughput: {len(seen):,} commands drained in {last - first:.2f}s = "
              f"{drained:,.0f} commands/s (goal 10,000/s)")

        # Latency at a steady rate.
        sent: dict[str, float] = {}
        lat: list[float] = []
        _, more = workload(args.rate * args.seconds, seed=99)
        period = 1.0 / args.rate
        t0 = time.monotonic()
        for i, op in enumerate(more):
            c = to_command(op, i, "lat")
            target = t0 + i * period
            # wait for the send time in consume() rather than spinning: a busy loop here takes
            # a core from the worker and the broker on a small machine
            while (now := time.monotonic()) < target:
                for msg in consumer.consume(1000, target - now):
                    _record(msg, sent, lat)
            producer.produce(prefix + "match.commands", CODEC.encode(c), c.symbol.encode())
            producer.poll(0)
            sent[c.command_id] = time.monotonic()
        producer.flush()
        end = time.monotonic() + 30
        while len(lat) < len(more) and time.monotonic() < end:
            for msg in consumer.consume(1000, 0.2):
                _record(msg, sent, lat)
        lat.sort()
        p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
        print(f"latency at {args.rate:,} commands/s for {args.seconds}s: {len(lat):,} commands, "
              f"command-to-event p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    finally:
        consumer.close()
        worker.terminate()
        worker.wait(30)

    # The floor: what a worker doing nothing with the same records drains, alone on the machine.
    records = topic_records(boot, prefix + "match.commands")
    for mode, what in (("aiokafka", "aiokafka's getmany alone (no Faust)"),
                       ("faust", "a bare stock Faust agent"),
                       ("delivery", "the services' delivery path (common/delivery.py), a route"),
                       ("template", "the service template (decode, validate, metrics)")):
        seconds = drain_floor(mode, boot, prefix, records)
        print(f"floor, {what} doing nothing with each command: {records:,} commands in {seconds:.2f}s = "
              f"{records / seconds:,.0f} commands/s")


def topic_records(boot: str, topic: str) -> int:
    """Records in a topic (its partitions' end offsets; nothing deleted yet)."""
    probe = Consumer({"bootstrap.servers": boot, "group.id": f"bench-{uuid.uuid4()}"})
    try:
        meta = probe.list_topics(topic, timeout=10).topics[topic]
        ends = [probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions]
        return sum(ends)
    finally:
        probe.close()


def drain_floor(mode: str, boot: str, prefix: str, records: int) -> float:
    """Seconds bench/faust_floor.py takes to drain match.commands in `mode`, first record to last."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": boot, "ORDERSTREAM_TOPIC_PREFIX": prefix,
           "ORDERSTREAM_PARTITIONS": "4", "FLOOR_TOPIC": prefix + "match.commands",
           "FLOOR_RECORDS": str(records), "FLOOR_PORT": str(free_port())}
    command = [sys.executable, str(ROOT / "bench" / "faust_floor.py"), mode, "worker", "-l", "warn"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    # Faust's worker sends what is printed to its log
    found = re.search(r"drained \d+ records in ([\d.]+) s", done.stdout + done.stderr)
    if found:
        return float(found.group(1))
    raise SystemExit(f"faust_floor.py {mode} exited with {done.returncode}:\n"
                     f"{done.stdout[-2000:]}{done.stderr[-2000:]}")


def _record(msg: object, sent: dict[str, float], lat: list[float]) -> None:
    if msg.error():  # type: ignore[attr-defined]
        return
    eid = CODEC.decode(msg.value()).event_id  # type: ignore[attr-defined]
    cid, _, n = eid.rpartition(":")
    if n == "0" and cid in sent:
        lat.append(time.monotonic() - sent.pop(cid))


if __name__ == "__main__":
    main()

"""The matcher worker on the real broker: same events as an uninterrupted run, across a hard kill."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from orderstream.common import records as r
from orderstream.common.codec import AvroCodec, schema_ids
from orderstream.common.record import Record
from orderstream.common.records import ALL_RECORDS
from orderstream.common.topics import create_topics
from orderstream.matcher.domain.engine import Matcher
from tests.kafka_tools import Worker, free_port, produce, read, unique_prefix
from tests.matcher_workload import instrument, random_commands

pytestmark = pytest.mark.integration

CODEC = AvroCodec(ALL_RECORDS, schema_ids(None))
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")


def comparable(rec: Record) -> dict[str, Any]:
    """A record without its wall-clock time (the reference run has its own clock)."""
    return rec.model_dump(exclude={"ts_event"})


class MatcherUnderTest:
    def __init__(self, bootstrap: str, tmp: Path) -> None:
        self.bootstrap, self.tmp = bootstrap, tmp
        self.prefix = unique_prefix()
        self.port = free_port()
        self.env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ORDERSTREAM_TOPIC_PREFIX": self.prefix,
            "ORDERSTREAM_PARTITIONS": "2",
            "ORDERSTREAM_MATCHER_WEB_PORT": str(self.port),
            "ORDERSTREAM_MATCHER_DATA_DIR": str(tmp / "faust"),
            "ORDERSTREAM_MATCHER_SESSION_TIMEOUT_S": "6",
            "ORDERSTREAM_MATCHER_DEPTH_INTERVAL_S": "0.5",
        }
        self.runs = 0

    def topic(self, name: str) -> str:
        return self.prefix + name

    async def start(self) -> Worker:
        self.runs += 1
        worker = Worker("orderstream.matcher", self.env, self.tmp / f"matcher-{self.runs}.log").start()
        await worker.wait_healthy(self.port)
        return worker

    async def send(self, cmds: list[Any]) -> None:
        await produce(self.bootstrap, self.topic("match.commands"),
                      [(c.symbol.encode(), CODEC.encode(c), {}) for c in cmds])

    async def instruments_known(self) -> None:
        """Wait until the worker has read every instrument (a probe cancel is refused as unknown order)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            probes = [r.CancelOrder(command_id=f"probe-{uuid.uuid4()}", ts_event=0, account_id="probe",
                                    order_id="none", client_order_id="", symbol=s) for s in SYMBOLS]
            await self.send(probes)
            ids = {f"{p.command_id}:0" for p in probes}
            await asyncio.sleep(0.5)
            events = [CODEC.decode(m.value) for m in await read(self.bootstrap, self.topic("order.events"),
                                                                10**6, timeout=2)]
            reasons = {e.reason for e in events if isinstance(e, r.OrderRejected) and e.event_id in ids}
            if reasons == {"UNKNOWN_ORDER"}:
                return
        raise AssertionError("the matcher never learned the instruments")


async def wait_for(bootstrap: str, topic: str, want: set[str], key: Any, timeout: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        records = [CODEC.decode(m.value) for m in await read(bootstrap, topic, 10**6, timeout=3)]
        have = {key(x) for x in records}
        if want <= have or time.monotonic() > deadline:
            return records
        await asyncio.sleep(1)


async def test_hard_kill_and_restart_gives_the_uninterrupted_events(kafka_bootstrap: str,
                                                                    tmp_path: Path) -> None:
    m = MatcherUnderTest(kafka_bootstrap, tmp_path)
    await create_topics(kafka_bootstrap, prefix=m.prefix, partitions=2)
    await produce(kafka_bootstrap, m.topic("ref.instruments"),
                  [(s.encode(), CODEC.encode(instrument(s)), {}) for s in SYMBOLS])
    first = random_commands(11, 2000, SYMBOLS)
    second = random_commands(12, 300, SYMBOLS, start=2000)

    # The reference: the same commands through the same core, uninterrupted, in one process.
    ref = Matcher()
    for s in SYMBOLS:
        ref.set_instrument(instrument(s))
    expected: dict[str, tuple[str, Record]] = {}
    for cmd in first + second:
        for out in ref.handle(cmd, 0):
            seq = getattr(out.record, "sequence", "")
            rid = getattr(out.record, "event_id", None) or f"{out.topic}:{seq}"
            expected.setdefault(f"{out.topic}|{out.key}|{rid}", (out.topic, out.record))
    order_events = {k.split("|", 2)[2]: rec for k, (t, rec) in expected.items() if t == "order.events"}
    trades = {rec.trade_id: rec for t, rec in expected.values() if isinstance(rec, r.Trade)}
    assert len(trades) > 50, "the workload must trade"

    worker = await m.start()
    await m.instruments_known()
    # Commands keep arriving (one acknowledged send at a time) while the worker is killed hard.
    sending = asyncio.create_task(m.send(first))
    seen = 0
    watcher = AIOKafkaConsumer(m.topic("order.events"), bootstrap_servers=kafka_bootstrap,
                               auto_offset_reset="earliest", enable_auto_commit=False)
    await watcher.start()
    try:  # one consumer that follows the events, so the kill lands a few hundred events in
        deadline = time.monotonic() + 120
        while seen <= 200 and time.monotonic() < deadline:
            for batch in (await watcher.getmany(timeout_ms=50)).values():
                seen += sum(1 for x in batch
                            if not CODEC.decode(x.value).event_id.startswith("probe-"))  # type: ignore[attr-defined]
    finally:
        await watcher.stop()
    worker.stop(signal.SIGKILL)
    await sending
    assert worker.proc is not None and worker.proc.returncode == -signal.SIGKILL
    first_ids = {f"{c.command_id}:" for c in first}
    first_total = sum(1 for eid in order_events if eid[: eid.rindex(":") + 1] in first_ids)
    assert 0 < seen < first_total, f"the kill must land mid-batch ({seen} of {first_total} events out)"

    worker = await m.start()
    await m.send(second)
    events = await wait_for(kafka_bootstrap, m.topic("order.events"), set(order_events),
                            key=lambda e: e.event_id)
    got: dict[str, Record] = {}
    for e in events:
        if e.event_id.startswith("probe-"):
            continue
        if e.event_id in got:  # a redelivered command's events are resent: identical, same id
            assert comparable(got[e.event_id]) == comparable(e), e.event_id
        got[e.event_id] = e
    missing, unexpected = set(order_events) - set(got), set(got) - set(order_events)
    assert not missing and not unexpected, (sorted(missing)[:5], sorted(unexpected)[:5])
    for eid, rec in order_events.items():
        assert comparable(got[eid]) == comparable(rec), eid
    # No fill twice: each trade id has exactly its two fills, whatever was redelivered.
    fills: dict[str, set[str]] = {}
    for e in got.values():
        if isinstance(e, r.OrderFilled):
            fills.setdefault(e.trade_id, set()).add(e.event_id)
    assert set(fills) == set(trades) and all(len(v) == 2 for v in fills.values())
    tape = await wait_for(kafka_bootstrap, m.topic("md.trades"), set(trades), key=lambda t: t.trade_id)
    assert {t.trade_id: comparable(t) for t in tape} == {k: comparable(v) for k, v in trades.items()}

    # The restarted worker's books equal the reference books (md.depth, compacted, last per symbol).
    for _ in range(60):
        snaps = {s.symbol: s for s in [CODEC.decode(x.value) for x in await read(
            kafka_bootstrap, m.topic("md.depth"), 10**6, timeout=1)]}
        want = {s: ref.depth(s, 50) for s in SYMBOLS}
        if all(s in snaps and snaps[s].sequence == want[s].sequence for s in SYMBOLS):
            break
        await asyncio.sleep(0.5)
    for s in SYMBOLS:
        assert comparable(snaps[s]) == comparable(want[s]), s
    assert worker.stop() == 0, worker.tail()
    assert Decimal(0) < sum(t.quantity for t in trades.values())


async def prepared(kafka_bootstrap: str, tmp_path: Path) -> MatcherUnderTest:
    m = MatcherUnderTest(kafka_bootstrap, tmp_path)
    await create_topics(kafka_bootstrap, prefix=m.prefix, partitions=2)
    await produce(kafka_bootstrap, m.topic("ref.instruments"),
                  [(s.encode(), CODEC.encode(instrument(s)), {}) for s in SYMBOLS])
    return m


async def test_gtd_order_expires_on_time_through_the_log(kafka_bootstrap: str, tmp_path: Path) -> None:
    m = await prepared(kafka_bootstrap, tmp_path)
    worker = await m.start()
    await m.instruments_known()
    expire_at = time.time_ns() + 2_000_000_000
    gtd = r.SubmitOrder(command_id="gtd-1", ts_event=time.time_ns(), account_id="A", order_id="gtd-o1",
                        client_order_id="g1", symbol="ETH-USD", side="BUY", order_type="LIMIT",
                        time_in_force="GTD", quantity=Decimal("0.5"), price=Decimal("2000"),
                        expire_at=expire_at)
    await m.send([gtd])
    events = await wait_for(kafka_bootstrap, m.topic("order.events"), {"gtd-o1:OrderExpired"},
                            key=lambda e: f"{e.order_id}:{type(e).__name__}", timeout=30)
    mine = [e for e in events if e.order_id == "gtd-o1"]
    assert [type(e).__name__ for e in mine] == ["OrderAccepted", "OrderExpired"]
    assert mine[1].expired_quantity == Decimal("0.5") and mine[1].sequence == 2
    # It expired because the matcher's clock sent an ExpireOrders command through match.commands.
    commands = [CODEC.decode(x.value) for x in await read(kafka_bootstrap, m.topic("match.commands"),
                                                           10**6, timeout=3)]
    expiries = [c for c in commands if isinstance(c, r.ExpireOrders) and c.symbol == "ETH-USD"]
    assert expiries and expiries[0].ts_event >= expire_at
    assert worker.stop() == 0, worker.tail()


async def test_two_workers_share_the_symbols_each_owned_by_one(kafka_bootstrap: str, tmp_path: Path) -> None:
    m = await prepared(kafka_bootstrap, tmp_path)
    one = await m.start()
    second_port = free_port()
    other = Worker("orderstream.matcher", {**m.env, "ORDERSTREAM_MATCHER_WEB_PORT": str(second_port),
                                           "ORDERSTREAM_MATCHER_DATA_DIR": str(tmp_path / "faust2")},
                   tmp_path / "matcher-b.log").start()
    commands_topic = m.topic("match.commands")

    async def owned() -> list[set[str]]:
        health = [await one.wait_healthy(m.port), await other.wait_healthy(second_port)]
        return [{tp for tp in h["assigned"] if tp.startswith(commands_topic + ":")} for h in health]

    for _ in range(60):  # the group settles on one partition of match.commands each
        parts = await owned()
        if all(len(p) == 1 for p in parts):
            break
        await asyncio.sleep(0.5)
    assert all(len(p) == 1 for p in parts) and parts[0] | parts[1] == {
        f"{commands_topic}:0", f"{commands_topic}:1"}
    await m.instruments_known()
    from aiokafka.partitioner import DefaultPartitioner
    spread = {DefaultPartitioner()(s.encode(), [0, 1], [0, 1]) for s in SYMBOLS}
    assert spread == {0, 1}, "the symbols must span both partitions, so both workers trade"
    cmds = random_commands(5, 400, SYMBOLS)
    ref = Matcher()
    for s in SYMBOLS:
        ref.set_instrument(instrument(s))
    expected = {o.record.event_id: o.record for c in cmds for o in ref.handle(c, 0)  # type: ignore[attr-defined]
                if o.topic == "order.events"}
    await m.send(cmds)
    events = await wait_for(kafka_bootstrap, m.topic("order.events"), set(expected), key=lambda e: e.event_id)
    got = {e.event_id: e for e in events if not e.event_id.startswith("probe-")}
    # Two owners of one book would diverge from the single reference book: they match exactly.
    assert set(got) == set(expected)
    assert all(comparable(got[k]) == comparable(v) for k, v in expected.items())
    assert one.stop() == 0 and other.stop() == 0

"""The service template through the real broker: Avro in and out, dead letters, health, failure policy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from orderstream.common.codec import AvroCodec, schema_ids
from orderstream.common.records import ALL_RECORDS, Deposit, OrderAccepted, SubmitOrder
from orderstream.common.topics import create_topics
from tests.kafka_tools import Worker, free_port, produce, read, unique_prefix

pytestmark = pytest.mark.integration

CODEC = AvroCodec(ALL_RECORDS, schema_ids(None))


def submit(n: int, symbol: str = "BTC-USD") -> SubmitOrder:
    return SubmitOrder(
        command_id=f"cmd-{n}", ts_event=1_700_000_000_000_000_000 + n, account_id=f"acct-{n % 3}",
        order_id=f"ord-{n}", client_order_id=f"cl-{n}", symbol=symbol, side="BUY",
        order_type="LIMIT", time_in_force="GTC", quantity=Decimal("0.125"),
        price=Decimal("64250.50"),
    )


class Probe:
    def __init__(self, bootstrap: str, prefix: str, port: int, worker: Worker) -> None:
        self.bootstrap, self.prefix, self.port, self.worker = bootstrap, prefix, port, worker

    def topic(self, name: str) -> str:
        return self.prefix + name


async def start_probe(kafka_bootstrap: str, tmp: Path) -> Probe:
    prefix = unique_prefix()
    await create_topics(kafka_bootstrap, prefix=prefix, partitions=2)
    port = free_port()
    worker = Worker("tests.integration.probe_service", {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ORDERSTREAM_TOPIC_PREFIX": prefix,
        "ORDERSTREAM_PARTITIONS": "2",
        "ORDERSTREAM_PROBE_WEB_PORT": str(port),
        "ORDERSTREAM_PROBE_DATA_DIR": str(tmp / "faust"),
        "ORDERSTREAM_PROBE_SESSION_TIMEOUT_S": "6",
    }, tmp / "probe.log").start()
    await worker.wait_healthy(port)
    return Probe(kafka_bootstrap, prefix, port, worker)


@pytest.fixture(scope="module")
async def probe(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Probe]:
    p = await start_probe(kafka_bootstrap, tmp_path_factory.mktemp("probe"))
    yield p
    assert p.worker.stop() == 0, p.worker.tail()


async def test_submit_order_through_broker_into_agent_and_back(probe: Probe) -> None:
    orders = [submit(n) for n in range(5)]
    await produce(probe.bootstrap, probe.topic("order.commands"), [
        (o.account_id.encode(), CODEC.encode(o), {"x-request-id": f"req-{o.command_id}".encode()})
        for o in orders
    ])
    out = await read(probe.bootstrap, probe.topic("order.events"), len(orders))
    got = {(m.key.decode(), CODEC.decode(m.value)) for m in out}
    assert len(out) == len(orders)
    for key, event in got:
        assert isinstance(event, OrderAccepted)
        assert key == event.account_id
    by_order = {e.order_id: e for _, e in got}
    for o in orders:
        e = by_order[o.order_id]
        assert (e.quantity, e.price, e.side) == (o.quantity, o.price, o.side)
        assert e.client_order_id == o.client_order_id
    headers = {m.value: dict(m.headers) for m in out}
    assert all(h["x-request-id"].startswith(b"req-cmd-") for h in headers.values())


async def test_undecodable_record_is_dead_lettered_and_next_record_processed(probe: Probe) -> None:
    good = submit(100)
    wrong_type = Deposit(command_id="d1", ts_event=1, account_id="acct-1", asset="USD",
                         amount=Decimal("10"), source="bank")
    await produce(probe.bootstrap, probe.topic("order.commands"), [
        (b"acct-1", b"\x00garbage-not-avro", {}),
        (b"acct-1", CODEC.encode(wrong_type), {}),
        (b"acct-1", b"\x00\x00\x00\x03\xe7\x01", {}),  # unknown schema id 999
        (b"acct-1", CODEC.encode(good), {}),
    ])
    dlq = await read(probe.bootstrap, probe.topic("order.commands.dlq"), 3)
    assert [m.value for m in dlq] == [b"\x00garbage-not-avro", CODEC.encode(wrong_type),
                                       b"\x00\x00\x00\x03\xe7\x01"]
    errors = [dict(m.headers)["x-dlq-error"].decode() for m in dlq]
    assert "not Confluent-framed Avro" in errors[0] or "unknown schema id" in errors[0]
    assert "Deposit is not a record of order.commands" in errors[1]
    assert "unknown schema id 999" in errors[2]
    first = dict(dlq[0].headers)
    assert first["x-dlq-source-topic"] == probe.topic("order.commands").encode()
    assert first["x-dlq-service"] == b"probe"
    assert all(m.key == b"acct-1" for m in dlq)
    events = await read(probe.bootstrap, probe.topic("order.events"), 6)
    assert good.order_id in {CODEC.decode(m.value).order_id for m in events}  # type: ignore[attr-defined]


async def test_health_and_metrics_endpoints(probe: Probe) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{probe.port}/healthz") as resp:
            assert resp.status == 200
            body = await resp.json()
        async with http.get(f"http://127.0.0.1:{probe.port}/metrics") as resp:
            assert resp.status == 200
            text = await resp.text()
    assert body["service"] == "probe" and body["status"] == "ok"
    assert 'orderstream_records_in_total{record="SubmitOrder",service="probe",topic="order.commands"}' in text
    assert "orderstream_dead_letters_total" in text


async def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items() if tp.topic.endswith("order.commands")}


async def test_record_failing_every_try_is_dead_lettered_and_the_partition_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    probe = await start_probe(kafka_bootstrap, tmp_path)
    try:
        # One key, so one partition: the failing record sits between good ones, in one batch.
        orders = [submit(3 * n) for n in range(1, 7)]
        bug = submit(3 * 100, symbol="BUG-BUG")
        sent = [*orders[:3], bug, *orders[3:]]
        await produce(kafka_bootstrap, probe.topic("order.commands"),
                      [(b"acct-0", CODEC.encode(o), {}) for o in sent])
        dlq = await read(kafka_bootstrap, probe.topic("order.commands.dlq"), 1)
        assert [m.value for m in dlq] == [CODEC.encode(bug)]
        headers = dict(dlq[0].headers)
        assert headers["x-dlq-tries"] == b"3"
        assert headers["x-dlq-error"] == b"deliberate handler bug"
        assert headers["x-dlq-error-type"] == b"RuntimeError"
        assert headers["x-dlq-source-offset"] == b"3"  # the partition's fourth record
        # Every other record is handled once: no loss, and the failed batch sent nothing twice.
        events = await read(kafka_bootstrap, probe.topic("order.events"), len(orders) + 1, timeout=8)
        assert sorted(CODEC.decode(m.value).order_id for m in events) == sorted(  # type: ignore[attr-defined]
            o.order_id for o in orders)
        # The worker goes on: later records of the same partition are handled, and it is healthy.
        late = submit(3 * 200)
        await produce(kafka_bootstrap, probe.topic("order.commands"), [(b"acct-0", CODEC.encode(late), {})])
        events = await read(kafka_bootstrap, probe.topic("order.events"), len(orders) + 1)
        assert late.order_id in {CODEC.decode(m.value).order_id for m in events}  # type: ignore[attr-defined]
        assert probe.worker.proc is not None and probe.worker.proc.poll() is None
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{probe.port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{probe.port}/metrics") as resp:
                text = await resp.text()
        assert 'orderstream_handler_failures_total{service="probe",topic="' in text
        # The committed offset reaches the end of the partition, past the dead-lettered record.
        group = f"{probe.prefix}orderstream-probe"
        for _ in range(40):
            if sorted((await committed(kafka_bootstrap, group)).values()) == [len(sent) + 1]:
                break
            await asyncio.sleep(0.25)
        assert sorted((await committed(kafka_bootstrap, group)).values()) == [len(sent) + 1]
    finally:
        assert probe.worker.stop() == 0, probe.worker.tail()

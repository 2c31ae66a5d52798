"""The floor under any Faust worker here: drain a topic and do nothing with its records.

Run by bench_matcher_service.py on the same match.commands records the matcher drained,
in a worker of its own (a new consumer group), one at a time:
- `faust`: a bare Faust agent (`stream.events()`, as the template's agents iterate), no
  decoding, no sensors of ours: what Faust and aiokafka cost per record;
- `delivery`: the project's delivery path (common/delivery.py) inside a Faust app, a
  route that does nothing with the batches it is handed: what the services' transport
  costs per record;
- `template`: the service template (`Service.consume`) with a handler that does nothing:
  the delivery path plus decoding, validation, metrics and the batch bookkeeping;
- `aiokafka`: aiokafka's own `getmany` loop, no Faust: the client's ceiling.

Prints `drained <n> records in <s> s` (first record to last) and exits.
Env: FLOOR_TOPIC, FLOOR_RECORDS, FLOOR_PORT, KAFKA_BOOTSTRAP_SERVERS, and for `template`
the ORDERSTREAM_* settings of the topic prefix and partitions.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from typing import Any, ClassVar

import faust
from aiokafka import AIOKafkaConsumer
from pydantic_settings import SettingsConfigDict

from orderstream.common.app import Delivery, Service, _App
from orderstream.common.record import Record
from orderstream.common.settings import ServiceSettings

WANT = int(os.environ.get("FLOOR_RECORDS", "0"))
_seen = {"n": 0, "t0": 0.0}


def count(n: int = 1) -> None:
    if _seen["n"] == 0:
        _seen["t0"] = time.monotonic()
    _seen["n"] += n
    if _seen["n"] >= WANT:
        print(f"drained {WANT} records in {time.monotonic() - _seen['t0']:.3f} s", flush=True)
        os._exit(0)


def bare_faust() -> faust.App:
    app = faust.App(
        f"floor-{os.getpid()}", broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
        web_port=int(os.environ["FLOOR_PORT"]), consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once", store="memory://", datadir=tempfile.mkdtemp(),
    )
    source = app.topic(os.environ["FLOOR_TOPIC"], key_type=bytes, value_type=bytes,
                       key_serializer="raw", value_serializer="raw")

    @app.agent(source)
    async def drain(stream: faust.StreamT[bytes]) -> None:
        async for _ in stream.events():
            count()

    return app


def delivery() -> faust.App:
    """A Faust app on the services' transport whose route counts each batch and does nothing else."""
    app = _App(
        f"floor-{os.getpid()}", broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
        web_port=int(os.environ["FLOOR_PORT"]), consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once", store="memory://", datadir=tempfile.mkdtemp(),
    )
    topic = os.environ["FLOOR_TOPIC"]
    app.topics.add(app.topic(topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw"))

    async def nothing(partition: int, records: list[Any]) -> None:
        count(len(records))

    app.routes[topic] = nothing
    return app


async def raw_aiokafka() -> None:
    consumer = AIOKafkaConsumer(
        os.environ["FLOOR_TOPIC"], bootstrap_servers=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        group_id=f"floor-{os.getpid()}", auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                count(len(records))
    finally:
        await consumer.stop()


class FloorSettings(ServiceSettings):
    service: ClassVar[str] = "floor"
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_FLOOR_", extra="forbid", frozen=True)


def template() -> Service:
    service = Service(FloorSettings(web_port=int(os.environ["FLOOR_PORT"]), data_dir=tempfile.mkdtemp(),
                                    log_level="WARNING", worker_id=f"floor-{os.getpid()}"))

    @service.consume("match.commands")
    async def nothing(record: Record, delivery: Delivery) -> None:
        count()

    return service


if __name__ == "__main__":
    mode = sys.argv.pop(1)  # then: worker ...
    if mode == "aiokafka":
        asyncio.run(raw_aiokafka())
    built: Any = {"faust": bare_faust, "delivery": delivery, "template": template}[mode]()
    built.main()

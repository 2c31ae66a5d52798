"""The floor under any Faust worker here: drain a topic and do nothing with its records.

Run by bench_matcher_service.py on the same match.commands records the matcher drained,
in a worker of its own (a new consumer group), one at a time:
- `faust`: a bare Faust agent (`stream.events()`, as the template's agents iterate), no
  decoding, no sensors of ours: what Faust and aiokafka cost per record;
- `template`: the service template's agent (`Service.consume`) with a handler that does
  nothing: Faust plus decoding, validation, sequencing and metrics.

Prints `drained <n> records in <s> s` (first record to last) and exits.
Env: FLOOR_TOPIC, FLOOR_RECORDS, FLOOR_PORT, KAFKA_BOOTSTRAP_SERVERS, and for `template`
the ORDERSTREAM_* settings of the topic prefix and partitions.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any, ClassVar

import faust
from pydantic_settings import SettingsConfigDict

from orderstream.common.app import Delivery, Service
from orderstream.common.record import Record
from orderstream.common.settings import ServiceSettings

WANT = int(os.environ.get("FLOOR_RECORDS", "0"))
_seen = {"n": 0, "t0": 0.0}


def count() -> None:
    if _seen["n"] == 0:
        _seen["t0"] = time.monotonic()
    _seen["n"] += 1
    if _seen["n"] == WANT:
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
    built: Any = bare_faust() if mode == "faust" else template()
    built.main()

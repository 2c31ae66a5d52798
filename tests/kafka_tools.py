"""Small real-broker helpers for tests: produce, read a topic, run a service worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

ROOT = Path(__file__).resolve().parents[1]


PREFIXES: list[str] = []  # every prefix this test session handed out: its topics are deleted at the end


def unique_prefix() -> str:
    """A topic prefix no other test run uses."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    PREFIXES.append(prefix)
    return prefix


def delete_test_topics(bootstrap: str) -> int:
    """Delete the topics of this session's prefixes (services' internal topics carry them too), so
    that a broker the suite runs against again and again does not pile up partitions (a local
    broker ran out of open files at about 20,000). How many were deleted."""
    from confluent_kafka.admin import AdminClient

    if not PREFIXES:
        return 0
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(tuple(PREFIXES))]
    for start in range(0, len(topics), 500):
        for done in admin.delete_topics(topics[start:start + 500], operation_timeout=30).values():
            try:
                done.result()
            except Exception as exc:  # best effort: one left behind is no failure
                print(f"topic not deleted: {exc}")
    return len(topics)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def new_topic(bootstrap: str, name: str, partitions: int = 1) -> str:
    """Create a topic with a name no other test run uses; its name."""
    name = unique_prefix() + name
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def produce(
    bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes, Mapping[str, bytes]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in items:
            await producer.send_and_wait(topic, value, key=key, headers=list(headers.items()))
    finally:
        await producer.stop()


async def read(
    bootstrap: str, topic: str, count: int, timeout: float = 60.0
) -> list[ConsumerRecord[Any, Any]]:
    """The first `count` records of `topic` (all partitions, from the start), or fewer on timeout."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[ConsumerRecord[Any, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


class Worker:
    """A service worker in its own process, as it runs in production."""

    started: ClassVar[list[Worker]] = []  # stopped by the `no_stray_workers` fixture

    def __init__(self, module: str, env: Mapping[str, str], log: Path) -> None:
        self.module, self.env, self.log = module, dict(env), log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "worker", "--loglevel", "info"],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
        )
        Worker.started.append(self)
        return self

    async def wait_healthy(self, port: int, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        if resp.status == 200:
                            body: dict[str, Any] = await resp.json()
                            if body.get("assigned_partitions"):
                                return body
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        raise AssertionError(f"worker not healthy in {timeout}s:\n{self.tail()}")

    async def wait_ready(self, base: str, timeout: float = 60.0) -> None:
        """Until GET /healthz answers 200 (a process with no partitions of its own: the gateway)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with http.get(base + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        raise AssertionError(f"not ready in {timeout}s:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def eventually(
    what: str, probe: Callable[[], Awaitable[Any]], timeout: float = 60.0, interval: float = 0.05
) -> Any:
    """Until `probe()` gives something true, which it returns; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (got := await probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(interval)
    return got

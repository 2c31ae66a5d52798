"""Test harness: a Kafka bootstrap address and a MongoDB URL for the whole session.

Chosen in this order:
1. KAFKA_BOOTSTRAP_SERVERS / MONGO_URL from the environment;
2. a reachable Docker engine: testcontainers with the images docker-compose.yml uses;
3. otherwise the project's local infrastructure (deploy/local/infra.py): a real
   Apache Kafka broker and FerretDB, started once per session and stopped at the
   end if this session started them (ORDERSTREAM_KEEP_INFRA=1 keeps them running).
Integration tests are never skipped for want of Docker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kafka_tools import delete_test_topics

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "deploy" / "local" / "infra.py"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.1"
MONGO_IMAGE = "mongo:7.0"


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongo_url: str
    source: str  # env, docker or local


def docker_available() -> bool:
    """True when a Docker engine answers (the CLI alone is not enough)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def _local_infra(stack: list[str]) -> Infra:
    out = subprocess.run([sys.executable, str(INFRA), "start"], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.exit(f"local infrastructure failed to start:\n{out.stderr}", returncode=3)
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    started = [s for s in env.get("started", "").split(",") if s]
    if started and os.environ.get("ORDERSTREAM_KEEP_INFRA") != "1":
        stack.extend(started)
    return Infra(env["KAFKA_BOOTSTRAP_SERVERS"], env["MONGO_URL"], "local")


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    mongo = os.environ.get("MONGO_URL")
    if kafka and mongo:
        yield Infra(kafka, mongo, "env")
        delete_test_topics(kafka)
        return
    if docker_available():
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.mongodb import MongoDbContainer

        with KafkaContainer(KAFKA_IMAGE).with_kraft() as k, MongoDbContainer(MONGO_IMAGE) as m:
            yield Infra(kafka or k.get_bootstrap_server(), mongo or m.get_connection_url(), "docker")
        return
    started: list[str] = []
    local = _local_infra(started)
    try:
        yield Infra(kafka or local.kafka_bootstrap, mongo or local.mongo_url, "local")
        delete_test_topics(kafka or local.kafka_bootstrap)
    finally:
        if started:
            subprocess.run([sys.executable, str(INFRA), "stop", *started], check=False)


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka_bootstrap


@pytest.fixture(scope="session")
def mongo_url(infra: Infra) -> str:
    return infra.mongo_url


def _kill_workers_after(index: int) -> None:
    from tests.kafka_tools import Worker

    while len(Worker.started) > index:
        worker = Worker.started.pop()
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(10)


@pytest.fixture(autouse=True)
def no_stray_workers() -> Iterator[None]:
    """Every worker process a test started is gone after it, whether the test passed or not."""
    from tests.kafka_tools import Worker

    before = len(Worker.started)
    yield
    _kill_workers_after(before)


@pytest.fixture(autouse=True, scope="session")
def no_stray_workers_at_exit() -> Iterator[None]:
    """Workers of wider-scoped fixtures too."""
    yield
    _kill_workers_after(0)


def pytest_report_header(config: pytest.Config) -> str:
    return f"orderstream: Docker engine {'reachable' if docker_available() else 'absent (local infra)'}"

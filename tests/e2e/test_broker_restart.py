"""A broker restart under load (issue 16): the services ride out the outage, nothing is lost or
applied twice, the order flow resumes soon after the broker is back, and the log does not flood.

The test runs its own broker (deploy/local/infra.py with a private cache folder and port), so
stopping it disturbs no other test. Orders are in the chain when the broker stops (a burst sent
just before); it stays down `DOWN_S`; then it starts again on the same data.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path

import pytest

from orderstream.common import records as r
from tests.e2e.stack import SERVICES, Stack, instrument
from tests.kafka_tools import ROOT, free_port

pytestmark = pytest.mark.integration

INFRA = ROOT / "deploy" / "local" / "infra.py"
CACHE = Path(os.environ.get("ORDERSTREAM_CACHE", ROOT / ".cache"))
DOWN_S = 30.0


class Broker:
    """A Kafka broker of our own: infra.py with its own cache folder (jars shared from the main one)."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        libs = folder / "kafka" / "libs"
        if (CACHE / "kafka" / "libs").exists():  # the jars infra.py resolved, not a second Maven run
            libs.parent.mkdir(parents=True, exist_ok=True)
            libs.symlink_to(CACHE / "kafka" / "libs")
        self.env = {**os.environ, "ORDERSTREAM_CACHE": str(folder), "ORDERSTREAM_KAFKA_PORT": str(self.port),
                    "ORDERSTREAM_KAFKA_HEAP": "512m"}

    def infra(self, *args: str) -> None:
        done = subprocess.run([sys.executable, str(INFRA), *args, "kafka"], env=self.env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    resolved = (CACHE / "kafka" / "libs").exists()
    if shutil.which("java") is None or (shutil.which("mvn") is None and not resolved):
        pytest.skip("a broker of the test's own needs Java, and Maven or the jars infra.py resolved")
    b = Broker(tmp_path / "broker")
    b.infra("install")
    b.infra("start")
    try:
        yield b
    finally:
        b.infra("stop")


def log_lines(stack: Stack, since: dict[str, int]) -> dict[str, int]:
    return {s: len(w.log.read_text(errors="replace").splitlines()) - since.get(s, 0)
            for s, w in stack.workers.items()}


async def test_a_broker_restart_under_load_loses_nothing_and_the_flow_resumes(
    broker: Broker, tmp_path: Path
) -> None:
    stack = Stack(broker.bootstrap, tmp_path)
    try:
        await stack.start([instrument("BTC-USD")])
        for account in ("A", "B"):
            await stack.deposit(account, "USD", "10000000")
            await stack.deposit(account, "BTC", "1000")
        await stack.until("deposits", lambda: len(stack.balances()) == 4)
        placed: list[r.SubmitOrder] = []

        async def burst(n: int) -> None:
            for i in range(n):  # resting sells, and buys that cross them: fills on both sides
                side, account = ("SELL", "A") if i % 2 == 0 else ("BUY", "B")
                placed.append(await stack.place(stack.order(account, "BTC-USD", side, "0.01", "30000")))

        await burst(100)
        since = log_lines(stack, {})
        broker.infra("stop")  # the burst is still in the chain
        stopped = time.monotonic()
        await asyncio.sleep(DOWN_S)
        for service, worker in stack.workers.items():
            assert worker.proc is not None and worker.proc.poll() is None, f"{service} died:\n{worker.tail()}"
        broker.infra("start")
        back = time.monotonic()
        outage_lines = log_lines(stack, since)

        probe = await stack.place(stack.order("A", "BTC-USD", "SELL", "0.01", "99999"))
        await stack.status(probe.order_id, "ACCEPTED", timeout=120)
        resumed = time.monotonic() - back
        await burst(100)

        def filled(o: r.SubmitOrder) -> bool:
            rep = stack.last_report(o.order_id)
            return rep is not None and rep.status == r.OrderStatus.FILLED

        await stack.until("every cross filled", lambda: all(filled(o) for o in placed), timeout=180)
        for service in SERVICES:
            worker = stack.workers[service]
            assert worker.proc is not None and worker.proc.poll() is None, f"{service} died:\n{worker.tail()}"
        assert not stack.dead_letters(), stack.dead_letters()
        assert not stack.double_settlements()
        for o in placed:
            assert [rep.sequence for rep in stack.reports(o.order_id)] == [1, 2], stack.reports(o.order_id)
        # conservation: what the two accounts have (free + held) plus the fees is what was deposited
        deposited = {"USD": D("20000000"), "BTC": D("2000")}
        await stack.until("settlement", lambda: all(
            sum(free + held for (_, a), (free, held) in stack.balances().items() if a == asset)
            + stack.fees().get(asset, D(0)) == amount for asset, amount in deposited.items()))
        print(json.dumps({"down_s": DOWN_S, "resumed_after_back_s": round(resumed, 1),
                          "outage_s": round(back - stopped, 1), "log_lines_during_outage": outage_lines}))
        assert resumed < 30, f"the order flow came back {resumed:.1f} s after the broker"
        # one line per reason per 10 s, not one per retry (before: about 100 producer lines per service)
        assert max(outage_lines.values()) < 100, outage_lines
    finally:
        await stack.stop()

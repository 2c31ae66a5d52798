"""Failover: how long the order flow stops when one service is killed (kill -9) under load.

Runs against a platform started with `make up` (the run folder's services.json names each
service's pid; ORDERSTREAM_RUN_DIR moves it). One fresh trader places a resting limit order
every `--every-ms` through the WebSocket and times each to its first execution report. Then,
service by service, the benchmark waits for a steady flow, kills the service's process, and
measures:
- resume: from the kill to the first report of an order placed after the kill (for the
  gateway: placed once a new connection is logged in);
- worst: the slowest order placed around the kill;
- every order placed gets its report (nothing lost).
The supervisor restarts the killed service; with static group membership it takes its
partitions back at once (docs/operations.md: Restarts).

With `orderstream up --replicas N` a service has N workers (`collateral`, `collateral-1`, ...):
the one killed is the worker that handles the trader's orders (its `records_handed` grows
while the trader places orders), so that the kill stops the flow the benchmark measures.

    python bench/bench_failover.py [--services collateral,router,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orderstream.client import GatewayClient, Session
from orderstream.ops.demo import new_traders
from orderstream.ops.platform import load_credentials, run_dir

SERVICES = ("collateral", "router", "matcher", "execution", "collector", "gateway")


@dataclass
class Probe:
    """Orders placed one by one, and when each was placed and first reported (monotonic s)."""

    placed: dict[str, float] = field(default_factory=dict)  # order id -> placed
    reported: dict[str, float] = field(default_factory=dict)  # order id -> first report
    sent: int = 0

    def latency(self, order_id: str) -> float | None:
        done = self.reported.get(order_id)
        return None if done is None else done - self.placed[order_id]


async def listen(session: Session, probe: Probe) -> None:
    while True:
        frame = await session.events.get()
        data = frame.get("data", {})
        if frame.get("type") == "execution_report" and data.get("order_id") not in probe.reported:
            probe.reported[data["order_id"]] = time.monotonic()


async def trade(http: aiohttp.ClientSession, client: GatewayClient, probe: Probe, every_s: float,
                stop: asyncio.Event) -> None:
    """Place orders until `stop`; a lost connection is opened again (the gateway may be down)."""
    while not stop.is_set():
        try:
            async with client.session(http) as session:
                await session.call("subscribe", {"stream": "user"})
                listener = asyncio.get_running_loop().create_task(listen(session, probe))
                try:
                    while not stop.is_set() and session.closed is None:
                        probe.sent += 1
                        params = {"client_order_id": f"fo{probe.sent}", "symbol": "BTC-USD", "side": "BUY",
                                  "order_type": "LIMIT", "time_in_force": "GTC", "quantity": "0.001",
                                  "price": "1000"}
                        t0 = time.monotonic()
                        result = await session.call("order.place", params, timeout=60)
                        probe.placed[result["order_id"]] = t0
                        await asyncio.sleep(every_s)
                finally:
                    deadline = time.monotonic() + 10  # the last orders' reports are still on their way
                    while stop.is_set() and set(probe.placed) - set(probe.reported) and \
                            time.monotonic() < deadline and session.closed is None:
                        await asyncio.sleep(0.1)
                    listener.cancel()
        except (aiohttp.ClientError, TimeoutError, ConnectionError, RuntimeError):
            await asyncio.sleep(0.1)  # the gateway is restarting


def pid_of(service: str) -> int | None:
    state = json.loads((run_dir() / "services.json").read_text())
    pid: int | None = state[service]["pid"]
    return pid


async def handed(http: aiohttp.ClientSession, port: int) -> int:
    try:
        async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            return int((await resp.json(content_type=None)).get("records_handed", 0))
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return 0


async def owner(http: aiohttp.ClientSession, service: str) -> str:
    """The worker of `service` that handles the trader's orders: the one whose handed records grow."""
    state = json.loads((run_dir() / "services.json").read_text())
    workers = {name: child["port"] for name, child in state.items()
               if (name == service or name.startswith(f"{service}-")) and child.get("port")}
    if len(workers) < 2:
        return service
    before = {name: await handed(http, port) for name, port in workers.items()}
    await asyncio.sleep(2.0)
    grown = {name: await handed(http, port) - before[name] for name, port in workers.items()}
    return max(grown, key=lambda name: grown[name])


async def steady(probe: Probe, within_s: float = 0.5, for_s: float = 3.0, timeout: float = 120) -> None:
    """Wait until every order placed in the last `for_s` seconds was reported within `within_s`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = time.monotonic()
        recent = [o for o, t in probe.placed.items() if now - for_s - within_s < t < now - within_s]
        if len(recent) >= 3 and all((lat := probe.latency(o)) is not None and lat < within_s for o in recent):
            return
    raise TimeoutError("the order flow did not become steady")


async def measure(http: aiohttp.ClientSession, probe: Probe, service: str) -> dict[str, Any]:
    await steady(probe)
    killed_name = await owner(http, service)
    await steady(probe)
    pid = pid_of(killed_name)
    assert pid is not None, f"{service} is not running"
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    while pid_of(killed_name) in (pid, None):
        await asyncio.sleep(0.1)
    while not [t for t in probe.placed.values() if t > killed + 1]:  # the flow goes on...
        await asyncio.sleep(0.1)
    await steady(probe)  # ...and is steady again
    first = min((t, o) for o, t in probe.placed.items() if t > killed)[1]
    around = [o for o, t in probe.placed.items() if killed - 1 < t < killed + 30]
    worst = max(lat for o in around if (lat := probe.latency(o)) is not None)
    return {"service": service, "killed": killed_name, "resume_s": round(probe.reported[first] - killed, 2),
            "worst_order_s": round(worst, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", default=os.environ.get("ORDERSTREAM_GATEWAY", "http://127.0.0.1:8080"))
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--every-ms", type=float, default=50.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    creds = load_credentials(run_dir())
    admin = GatewayClient(args.gateway, creds["admin"]["key_id"], creds["admin"]["secret"])
    probe, stop = Probe(), asyncio.Event()
    async with aiohttp.ClientSession() as http:
        (trader,) = await new_traders(http, admin, [f"fo-{uuid.uuid4().hex[:6]}"], 1)
        every_s = args.every_ms / 1000
        task = asyncio.get_running_loop().create_task(trade(http, trader.client, probe, every_s, stop))
        rows = []
        try:
            for service in args.services.split(","):
                if task.done():
                    task.result()  # the trader failed: say why
                row = await measure(http, probe, service)
                print(f"{row['killed']:<13} resume {row['resume_s']:6.2f} s   "
                      f"worst order {row['worst_order_s']:6.2f} s", flush=True)
                rows.append(row)
            await steady(probe)
        finally:
            stop.set()
            await task
    unreported = [o for o in probe.placed if o not in probe.reported]
    print(f"{len(probe.placed)} orders placed, {len(unreported)} without a report")
    if args.json:
        args.json.write_text(json.dumps({"kills": rows, "orders": len(probe.placed),
                                         "unreported": len(unreported)}, indent=2))
    if unreported:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())

"""The whole order path: how fast, and how late, a client's order becomes its first execution report.

An order crosses gateway -> order.commands -> collateral -> order.funded -> router ->
match.commands -> matcher -> order.events -> execution -> execution.reports -> the
gateway's user stream. This bench drives that path through the public WebSocket API
of a running platform, step by step, and measures per step:
- offered, sent, accepted (the gateway answered `order.place` ok) and reported orders/s
  (orders whose first execution report reached the client), each rate over the span from the
  step's first such event to its last, so a backlog drained after the step counts at the pace
  the chain drained it;
- order-to-first-report p50 / p99 / p99.9 (from sending `order.place` to the order's first
  `execution_report` on the user stream) and gateway answer p50 / p99 (send to answer);
- CPU ms per reported order of every process (the six services, Kafka, the MongoDB-wire
  server and this client) from /proc/<pid>/stat, over the step and its drain.

Traders are fresh accounts, created and funded through the admin API (`orderstream demo`'s
code), each on its own WebSocket. The mix is the demo's: 70% limit orders around a mid on
both sides (most rest), 15% crossing IOC limits, 15% market orders, on BTC-USD and ETH-USD
(the internal matcher), plus a cancel of a random open order after about one order in ten.
Sending is open-loop: each trader sends on its own schedule without waiting for answers,
up to `--in-flight` unanswered requests per connection. Steps: each of `--rates` (10, 100,
300, 1000 orders/s and `max`, as fast as the gateway answers) for `--seconds`, in two shapes:
`busy` (8 traders) and `sparse` (`--sparse-traders`, 40). Every trader's connection stays
open for the whole run, so a resting order's fills still reach its owner in later steps.
A few seconds of unmeasured traffic come first (`--warm-up`): a fresh platform is slow at
first. After each step the bench waits until every accepted order has its first report,
reports have stopped coming and the services' consumer groups have no lag (the drain), so a
step's backlog does not run into the next; an accepted order without a report by then is
counted lost (and, if its report comes later, late). The gateway accepts orders faster than
the chain handles them, so the upper steps leave a backlog that takes a while to drain: a
drain lasts as long as reports keep coming (up to `--drain-max`).

The bare chain runs in the same process afterwards: five Faust workers, each its own process
with one agent that forwards raw records from topic i to topic i+1 (the partition count of
order.commands), fed by a producer here at the same rates and a consumer here timing
first-topic send to last-topic receipt (at `max`, with at most `--bare-window` records in the
chain, so it measures the chain's pace rather than the length of a queue). It is what five
Faust hops cost on this machine with no work in them; the ratio of the chain's top rate to the
bare chain's is the share of that ceiling the services reach. `--bare-runtime` picks how the
hops are built (`make_bare_app`): `stock` Faust agents, or `service`, the services' delivery
path (common/delivery.py and their RecordProducer), when this checkout has it.

Last, every open order is canceled and the demo's end-state checks run on the bench's traders
(report sequences gapless, ledger exact, nothing held, conservation, MongoDB history equal to
the last reports). The exit status is 1 when a check fails.

Platform: `--use-running` uses the platform `orderstream up` started (keys from
.cache/platform/credentials.json). Otherwise the bench runs `orderstream up` itself, with the
gateway's per-key order rate limit raised (the default, 50 orders/s per key, would refuse the
busy shape's 1000/s), and stops afterwards only what that started: the services, and the local
servers only when `up` started them (with KAFKA_BOOTSTRAP_SERVERS and MONGO_URL set they are
external and keep running). A running gateway's rate limit shows as refusals (42901).
`--no-chain` needs only Kafka (the environment's, else the local one, stopped at exit if the
bench started it).

Usage:
    .venv/bin/python bench/bench_chain.py [--use-running] [--quick] [--seconds S]
        [--rates 10,100,300,1000,max] [--shapes busy,sparse] [--sparse-traders 40]
        [--bare-runtime stock|service|stock,service] [--no-bare] [--no-chain] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.servers import servers
from orderstream.client import ApiCallError, GatewayClient
from orderstream.common.settings import DEFAULT_PARTITIONS
from orderstream.ops import demo, platform, tools
from orderstream.ops.demo import FINAL, Trader

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "collateral", "router", "matcher", "execution", "collector")
SERVERS = ("kafka", "ferretdb")
SHAPES = {"busy": 8, "sparse": 40}
CANCEL_SHARE = 0.1  # a cancel of a random open order after about one order in ten
RAISED_LIMIT = "1000000"  # orders/s and burst per key when the bench starts the gateway itself
CALL_TIMEOUT_S = 60.0
TICK = os.sysconf("SC_CLK_TCK")
BARE_HOPS = 5
BARE_RECORD = struct.Struct("!HQd")  # step, sequence number, send time (perf_counter, this process)
BARE_BYTES = 200  # about an encoded SubmitOrder
BARE_PROBE = 0xFFFF  # the step number of warm-up records


# -- numbers ------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of `values` (sorted), in the values' unit; None when empty."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def per_s(count: int, first: float, last: float) -> float:
    """The pace of `count` events from the first (at `first`) to the last (at `last`)."""
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


def pace(times: list[float]) -> float:
    return per_s(len(times), min(times), max(times)) if times else 0.0


# -- processes and their CPU ------------------------------------------------------------------


def cmdlines() -> Iterable[tuple[int, str]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                yield int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"
                )


def platform_processes() -> dict[str, list[int]]:
    """name -> pids: the services (from the supervisor's services.json, else by command line),
    Kafka, the MongoDB-wire server and this client."""
    found: dict[str, list[int]] = {name: [] for name in (*SERVICES, *SERVERS)}
    known: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        known = json.loads((platform.run_dir() / "services.json").read_text())
    lines = dict(cmdlines())
    for service in SERVICES:
        pid = (known.get(service) or {}).get("pid")
        if pid and f"orderstream.{service}" in lines.get(pid, ""):
            found[service] = [pid]
        else:  # another supervisor, a docker-less manual start: find the module on a command line
            found[service] = [p for p, line in lines.items() if f"-m orderstream.{service}" in line]
    for pid, line in lines.items():
        program = os.path.basename(line.split(" ", 1)[0])  # not a `grep kafka.Kafka` that mentions it
        if program == "java" and " kafka.Kafka " in line:
            found["kafka"].append(pid)
        elif program == "orderstream-ferretdb":
            found["ferretdb"].append(pid)
    found["bench"] = [os.getpid()]
    return found


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return int(fields[11]) + int(fields[12])


class CpuMeter:
    """CPU each named process group used between `start()` and `stop()`, in ms."""

    def __init__(self, processes: dict[str, list[int]]) -> None:
        self.processes = processes
        self._start: dict[int, int | None] = {}

    def start(self) -> None:
        self._start = {pid: cpu_ticks(pid) for pids in self.processes.values() for pid in pids}

    def stop(self) -> dict[str, float | None]:
        """ms per group; None when a process is missing or restarted in between (its count reset)."""
        out: dict[str, float | None] = {}
        for name, pids in self.processes.items():
            total: float | None = 0.0 if pids else None
            for pid in pids:
                before, after = self._start.get(pid), cpu_ticks(pid)
                if before is None or after is None or after < before or total is None:
                    total = None
                else:
                    total += (after - before) * 1000 / TICK
            out[name] = total
        return out


def per_unit(cpu: dict[str, float | None], units: int) -> dict[str, float | None]:
    return {k: (round(v / units, 3) if v is not None and units else None) for k, v in cpu.items()}


class LoopLag:
    """How late this process's event loop runs a 20 ms timer: the client's own saturation."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.02)
            self.samples.append(time.perf_counter() - t0 - 0.02)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *_: Any) -> None:
        if self._task is not None:
            self._task.cancel()

    def take(self) -> float | None:
        """p99 of the samples since the last take, in ms."""
        samples, self.samples = sorted(self.samples), []
        return ms(pct(samples, 99))


# -- the platform ------------------------------------------------------------------------------


@dataclass
class Platform:
    gateway: str
    bootstrap: str
    prefix: str
    started: bool = False  # the bench ran `orderstream up` and its supervisor
    own_marker: bool = False  # ... and that `up` started the local servers (down stops them)


def start_platform(args: argparse.Namespace) -> Platform:
    """The running platform (`--use-running`, or one that already runs), else `orderstream up`;
    with --no-chain only Kafka (the environment's, else the local one, stopped at exit if started)."""
    folder = platform.run_dir()
    prefix = os.environ.get("ORDERSTREAM_TOPIC_PREFIX", "")
    gateway = args.gateway or f"http://127.0.0.1:{platform.web_port('gateway', dict(os.environ))}"
    if args.no_chain and not args.use_running:
        return Platform(gateway, servers("kafka")["KAFKA_BOOTSTRAP_SERVERS"], prefix)
    running = platform.supervisor_pid(folder) is not None
    if args.use_running or running:
        if not args.use_running:
            print("bench: the platform already runs; using it (and leaving it running)")
        if not (folder / "credentials.json").exists():
            sys.exit(f"bench: no {folder / 'credentials.json'}: run `orderstream up` first")
        return Platform(gateway, kafka_bootstrap(), prefix)
    marker = folder / "infra-started"
    had_marker = marker.exists()
    env = {
        **os.environ,
        # the default (50 orders/s per key) would refuse the busy shape's upper steps
        "ORDERSTREAM_GATEWAY_ORDERS_PER_S": os.environ.get("ORDERSTREAM_GATEWAY_ORDERS_PER_S", RAISED_LIMIT),
        "ORDERSTREAM_GATEWAY_ORDERS_BURST": os.environ.get("ORDERSTREAM_GATEWAY_ORDERS_BURST", RAISED_LIMIT),
    }
    print("bench: starting the platform (orderstream up)", flush=True)
    started = Platform(gateway, "", prefix, started=True)
    try:
        subprocess.run([sys.executable, "-m", "orderstream.ops.platform", "up"], env=env, check=True,
                       cwd=ROOT)
    except BaseException:
        started.own_marker = marker.exists() and not had_marker
        stop_platform(started)
        raise
    started.own_marker = marker.exists() and not had_marker
    started.bootstrap = kafka_bootstrap()
    return started


def kafka_bootstrap() -> str:
    """Where the platform's Kafka listens: the environment's, compose's, else the local server's."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    if (platform.run_dir() / "compose-started").exists():
        return "127.0.0.1:29092"  # what `orderstream up` gives the compose stack's clients
    out = subprocess.run([sys.executable, str(platform.INFRA), "env"], capture_output=True, text=True,
                         check=False).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line).get(
        "KAFKA_BOOTSTRAP_SERVERS", tools.default_bootstrap()
    )


def stop_platform(p: Platform) -> None:
    """Stop what `start_platform` started: the services; the local servers only if its `up` did."""
    if not p.started:
        return
    folder = platform.run_dir()
    if p.own_marker or not (folder / "infra-started").exists():
        platform.down(argparse.Namespace())  # stops servers only when the marker (ours) is there
        return
    # an older `up` started the servers: `down` would stop them too, so stop only the supervisor
    pid = platform.supervisor_pid(folder)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + platform.STOP_GRACE_S + 10
        while platform.supervisor_pid(folder) is not None and time.monotonic() < deadline:
            time.sleep(0.3)


# -- the chain: traders, steps, drains -----------------------------------------------------


@dataclass(slots=True)
class Order:
    sent: float
    answered: float | None = None
    ok: bool = False
    reported: float | None = None  # when its first execution report arrived


class OpenOrders:
    """A trader's open orders, for picking a random one to cancel in O(1)."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._at: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, order_id: str) -> None:
        if order_id not in self._at:
            self._at[order_id] = len(self._ids)
            self._ids.append(order_id)

    def discard(self, order_id: str) -> None:
        i = self._at.pop(order_id, None)
        if i is not None:
            last = self._ids.pop()
            if i < len(self._ids):
                self._ids[i] = last
                self._at[last] = i

    def pick(self, rng: random.Random) -> str:
        order_id = self._ids[rng.randrange(len(self._ids))]
        self.discard(order_id)  # one cancel per order is enough
        return order_id


@dataclass
class Account:
    """One bench trader: the demo's Trader (reports, session, in-flight slots) plus its orders."""

    trader: Trader
    rng: random.Random
    orders: dict[str, Order] = field(default_factory=dict)  # client_order_id -> order
    open: OpenOrders = field(default_factory=OpenOrders)
    backoff_until: float = 0.0  # after a 42901, when this trader may send again

    def next_order(self) -> dict[str, Any]:
        """The demo's mix: 70% limit (mostly resting), 15% crossing IOC limit, 15% market."""
        rng = self.rng
        symbol = rng.choice(["BTC-USD", "BTC-USD", "ETH-USD"])
        roll = rng.random()
        if roll < 0.70:
            return demo.limit(rng, symbol)
        if roll < 0.85:
            return demo.limit(rng, symbol, crossing=True)
        return demo.market(rng, symbol)


@dataclass
class Step:
    index: int
    shape: str
    traders: int
    rate: float | None  # orders/s in all; None: as fast as the gateway answers
    seconds: float
    start: float = 0.0
    send_end: float = 0.0
    closed: float | None = None  # end of its drain: a later first report is late
    orders: list[Order] = field(default_factory=list)
    cancels: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    drain: str = ""
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "max" if self.rate is None else f"{self.rate:g}"


class Chain:
    """Drives the platform through the gateway and keeps what each step measured."""

    def __init__(self, args: argparse.Namespace, plat: Platform) -> None:
        self.args = args
        self.platform = plat
        self.accounts: dict[str, list[Account]] = {}
        self.steps: list[Step] = []
        self.reports = 0  # execution reports received, every kind
        self.last_report = 0.0
        self.lag = LoopLag()
        self.closed_sessions: list[str] = []
        self.idle_cpu: dict[str, float | None] = {}

    # -- reports ------------------------------------------------------------------

    async def listen(self, acct: Account) -> None:
        """Every execution report of one trader, kept the demo's way (the checks read them)."""
        trader = acct.trader
        assert trader.session is not None
        events = trader.session.events
        while True:
            frame = await events.get()
            if frame.get("type") != "execution_report":
                continue
            now = time.perf_counter()
            rep = frame["data"]
            seqs = trader.reports[rep["order_id"]]
            if rep["sequence"] in seqs:
                continue
            seqs[rep["sequence"]] = rep
            self.reports += 1
            self.last_report = now
            order = acct.orders.get(rep["client_order_id"])
            if order is not None and order.reported is None:
                order.reported = now
            if rep["status"] in FINAL:
                acct.open.discard(rep["order_id"])
            elif len(seqs) == 1:
                acct.open.add(rep["order_id"])

    # -- sending ------------------------------------------------------------------

    def fire(self, acct: Account, action: Any) -> None:
        """Run a request without waiting for it (its slot was taken by the caller)."""

        async def run() -> None:
            try:
                await action
            finally:
                acct.trader.slots.release()

        task = asyncio.get_running_loop().create_task(run())
        acct.trader.tasks.add(task)
        task.add_done_callback(acct.trader.tasks.discard)

    async def place(self, acct: Account, step: Step, params: dict[str, Any]) -> None:
        session = acct.trader.session
        assert session is not None
        cid = f"b{step.index if step.index >= 0 else 'w'}-{acct.trader.cid()}"
        order = Order(time.perf_counter())
        acct.orders[cid] = order
        step.orders.append(order)
        try:
            await session.call("order.place", {"client_order_id": cid, **params}, timeout=CALL_TIMEOUT_S)
        except ApiCallError as exc:
            step.refused[str(exc.code)] += 1
            if exc.code == 42901:
                acct.backoff_until = time.perf_counter() + float(exc.details.get("retry_after_s", 0.5))
        except (TimeoutError, ConnectionError) as exc:  # not answered: it may still be reported
            step.refused[type(exc).__name__] += 1
        else:
            order.ok = True
        order.answered = time.perf_counter()

    async def cancel(self, acct: Account, step: Step, order_id: str) -> None:
        session = acct.trader.session
        assert session is not None
        step.cancels += 1
        with contextlib.suppress(ApiCallError, TimeoutError, ConnectionError):  # it may have ended
            await session.call("order.cancel", {"order_id": order_id}, timeout=CALL_TIMEOUT_S)

    async def pace(self, acct: Account, step: Step, offset: float) -> None:
        """One trader's share of the step: on its schedule (open loop), or as fast as its slots allow."""
        slots = acct.trader.slots
        interval = step.traders / step.rate if step.rate else 0.0
        due = step.start + offset
        end = step.send_end
        while True:
            now = time.perf_counter()
            if step.rate:
                if due >= end:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                due += interval
            else:
                if now >= end:
                    return
                if acct.backoff_until > now:
                    await asyncio.sleep(min(acct.backoff_until, end) - now)
                    continue
            await slots.acquire()
            if time.perf_counter() >= end:  # the slots were full until the step ended
                slots.release()
                return
            self.fire(acct, self.place(acct, step, acct.next_order()))
            if len(acct.open) and acct.rng.random() < CANCEL_SHARE:
                await slots.acquire()
                self.fire(acct, self.cancel(acct, step, acct.open.pick(acct.rng)))
            if not step.rate:
                await asyncio.sleep(0)  # let answers and reports in between sends

    # -- a step ---------------------------------------------------------------------

    async def run_step(self, step: Step, accounts: list[Account]) -> None:
        cpu = CpuMeter(platform_processes())
        cpu.start()
        self.lag.take()
        step.start = time.perf_counter() + 0.05
        step.send_end = step.start + step.seconds
        spread = (1 / step.rate) if step.rate else 0.0  # traders' schedules interleave, not in lockstep
        await asyncio.gather(*(self.pace(a, step, i * spread) for i, a in enumerate(accounts)))
        pending = [t for a in accounts for t in a.trader.tasks]
        if pending:
            await asyncio.wait(pending, timeout=CALL_TIMEOUT_S + 5)
        step.drain = await self.drain(step)
        step.closed = time.perf_counter()
        used = cpu.stop()
        self.summarize(step, used)

    async def drain(self, step: Step) -> str:
        """Wait until the step's accepted orders all have a first report, reports stopped for a
        second and the services' groups have no lag; or until nothing moved for `--drain-idle`."""
        args = self.args
        started = time.perf_counter()
        progress_at, seen, last_lag = started, -1, None
        while True:
            await asyncio.sleep(0.25)
            now = time.perf_counter()
            if self.reports != seen:
                seen, progress_at = self.reports, now
            waiting = sum(1 for o in step.orders if o.ok and o.reported is None)
            if not waiting and now - self.last_report >= 1.0:
                lag = await self.platform_lag()
                if not lag:  # 0, or the lag could not be read (then reports alone decide)
                    return f"drained in {now - started:.1f}s"
                if lag != last_lag:
                    last_lag, progress_at = lag, now
            if now - progress_at > args.drain_idle:
                return f"stalled: {waiting} orders without a report, nothing moved for {args.drain_idle:.0f}s"
            if now - started > args.drain_max:
                return f"gave up after {args.drain_max:.0f}s with {waiting} orders without a report"

    async def platform_lag(self) -> int | None:
        """Records the services' consumer groups have not committed yet, over every topic."""
        try:
            per_service = await asyncio.wait_for(tools.lag(self.platform.bootstrap, self.platform.prefix), 10)
        except Exception:  # the lag is a refinement of the drain; reports decide without it
            return None
        return sum(sum(topics.values()) for topics in per_service.values())

    def summarize(self, step: Step, used: dict[str, float | None]) -> None:
        accepted = [o for o in step.orders if o.ok]
        reported = sorted((o.reported - o.sent) for o in accepted if o.reported is not None)
        answers = sorted(o.answered - o.sent for o in accepted if o.answered is not None)
        step.result = {
            "shape": step.shape,
            "traders": step.traders,
            "offered_per_s": step.rate if step.rate is not None else "max",
            "seconds": step.seconds,
            "sent": len(step.orders),
            "sent_per_s": round(pace([o.sent for o in step.orders]), 1),
            "accepted": len(accepted),
            "accepted_per_s": round(pace([o.answered for o in accepted if o.answered is not None]), 1),
            "reported": len(reported),
            "reported_per_s": round(pace([o.reported for o in accepted if o.reported is not None]), 1),
            "lost": len(accepted) - len(reported),
            "late": 0,  # filled in at the end: lost orders whose report came after the drain
            "refused": dict(step.refused),
            "cancels": step.cancels,
            "report_ms": {"p50": ms(pct(reported, 50)), "p99": ms(pct(reported, 99)),
                          "p99.9": ms(pct(reported, 99.9)), "max": ms(reported[-1] if reported else None)},
            "answer_ms": {"p50": ms(pct(answers, 50)), "p99": ms(pct(answers, 99))},
            "client_loop_lag_p99_ms": self.lag.take(),
            "drain": step.drain,
            "cpu_ms": {k: (round(v, 1) if v is not None else None) for k, v in used.items()},
            "cpu_ms_per_order": per_unit(used, len(reported)),
        }
        r = step.result
        print(
            f"  {step.shape:<6} {step.label:>5}/s: sent {r['sent_per_s']:7.1f}/s accepted "
            f"{r['accepted_per_s']:7.1f}/s reported {r['reported_per_s']:7.1f}/s | first report p50 "
            f"{fmt(r['report_ms']['p50'])} p99 {fmt(r['report_ms']['p99'])} ms | answer p50 "
            f"{fmt(r['answer_ms']['p50'])} ms | lost {r['lost']} refused {sum(step.refused.values())} | "
            f"{step.drain}",
            flush=True,
        )

    # -- the whole chain run -----------------------------------------------------------

    async def run(self, http: aiohttp.ClientSession, shapes: list[str], rates: list[float | None]) -> int:
        args = self.args
        creds = platform.load_credentials(platform.run_dir())
        admin = GatewayClient(self.platform.gateway, creds["admin"]["key_id"], creds["admin"]["secret"])
        run_id = uuid.uuid4().hex[:6]
        for shape in shapes:
            count = args.sparse_traders if shape == "sparse" else SHAPES[shape]
            names = [f"bench-{run_id}-{shape}-{i}" for i in range(count)]
            traders = await demo.new_traders(http, admin, names, args.in_flight)
            base = len(self.accounts) * 1000
            self.accounts[shape] = [
                Account(t, random.Random(args.seed + base + i)) for i, t in enumerate(traders)
            ]
        everyone = [a for accounts in self.accounts.values() for a in accounts]
        print(f"bench {run_id}: {len(everyone)} traders created and funded "
              f"({', '.join(f'{s}: {len(a)}' for s, a in self.accounts.items())})", flush=True)
        async with contextlib.AsyncExitStack() as stack:
            for acct in everyone:
                session = await stack.enter_async_context(acct.trader.client.session(http))
                acct.trader.session = session
                await session.call("subscribe", {"stream": "user"})
            listeners = [asyncio.create_task(self.listen(a)) for a in everyone]
            stack.callback(lambda: [t.cancel() for t in listeners])
            stack.enter_context(self.lag)
            if args.warm_up:  # a fresh platform is slow for its first seconds; that is not a rate's doing
                first = shapes[0]
                warm = Step(-1, "warmup", len(self.accounts[first]), 20.0, args.warm_up)
                await self.run_step(warm, self.accounts[first])
            self.idle_cpu = await idle_cpu(platform_processes())
            for shape in shapes:
                for rate in rates:
                    step = Step(len(self.steps), shape, len(self.accounts[shape]), rate, args.seconds)
                    self.steps.append(step)
                    await self.run_step(step, self.accounts[shape])
            for step in self.steps:  # reports that came after their step's drain
                closed = step.closed or math.inf
                step.result["late"] = sum(
                    1 for o in step.orders if o.ok and o.reported is not None and o.reported > closed
                )
                step.result["lost"] -= step.result["late"]
            self.closed_sessions = [a.trader.account for a in everyone
                                    if a.trader.session is None or a.trader.session.closed]
            # the steps' table now: the end-state checks read the whole MongoDB history and can
            # take minutes on FerretDB (it scans for any query not on _id)
            report({"chain": [s.result for s in self.steps if s.result], "idle_cpu_ms_per_s": self.idle_cpu})
            return await self.end_checks(http, everyone)

    async def end_checks(self, http: aiohttp.ClientSession, everyone: list[Account]) -> int:
        """Cancel everything (each open order once, then the demo's settle for stragglers), then
        the demo's end-state checks on the bench's traders."""
        if self.closed_sessions:
            print(f"bench: {len(self.closed_sessions)} connections were closed by the gateway (too slow?); "
                  "their traders miss reports and the checks will say so")
        print("bench: canceling every open order, then the end-state checks", flush=True)
        step = Step(len(self.steps), "cancel-all", len(everyone), None, 0)
        for acct in everyone:
            for order_id, seqs in list(acct.trader.reports.items()):
                if seqs and acct.trader.last(order_id)["status"] not in FINAL:
                    await acct.trader.slots.acquire()
                    self.fire(acct, self.cancel(acct, step, order_id))
        await asyncio.gather(*(t for a in everyone for t in list(a.trader.tasks)))
        # the demo's settle cancels every open order again every 2 s: with a backlog of cancels in
        # the chain that would pile up repeats, so it only comes once these cancels are through
        await self.until_final(everyone)
        settled = await demo.settle([a.trader for a in everyone], timeout_s=60)
        if not settled:
            print("bench: some orders were not final after the cancels")
        stats = demo.Stats()
        for acct in everyone:
            for order in acct.orders.values():
                stats.placed += order.ok
                if order.ok and order.reported is not None:
                    stats.latencies.append(order.reported - order.sent)
        stats.fills = sum(len(demo.fills(a.trader)) for a in everyone)
        elapsed = sum(s.seconds for s in self.steps) + self.args.warm_up
        return await demo.checks(http, [a.trader for a in everyone], stats, elapsed)

    async def until_final(self, everyone: list[Account]) -> None:
        """Until every reported order is final, or reports stop coming for `--drain-idle`."""
        started = progress_at = time.perf_counter()
        seen = -1
        while any(a.trader.last(o)["status"] not in FINAL for a in everyone for o in a.trader.reports):
            await asyncio.sleep(0.5)
            now = time.perf_counter()
            if self.reports != seen:
                seen, progress_at = self.reports, now
            if now - progress_at > self.args.drain_idle or now - started > self.args.drain_max:
                return


async def idle_cpu(processes: dict[str, list[int]], seconds: float = 2.0) -> dict[str, float | None]:
    """ms of CPU per second each process uses with no traffic (Faust's polling, Kafka's timers)."""
    meter = CpuMeter(processes)
    meter.start()
    await asyncio.sleep(seconds)
    return {k: (round(v / seconds, 1) if v is not None else None) for k, v in meter.stop().items()}


# -- the bare chain ----------------------------------------------------------------------------


class BareRuntimeUnavailable(Exception):
    """The chosen way to build the bare hops cannot be built from this checkout."""


def make_bare_app(runtime: str, app_id: str, source: str, sink: str, bootstrap: str,
                  partitions: int, datadir: str) -> faust.App:
    """One hop of the bare chain: a minimal Faust app whose only work is forwarding the raw bytes
    of every record of `source` to `sink`, with the same key (so the same partition).

    `stock`: a Faust agent over `stream.events()`, Faust's own consumer and producer.
    `service`: the project's delivery path (see `service_bare_app`).
    """
    settings: dict[str, Any] = {
        "broker": f"kafka://{bootstrap}",
        "store": "memory://",
        "datadir": datadir,
        "web_enabled": False,  # (the worker command line also says --without-web: it wins)
        "autodiscover": False,
        "topic_partitions": partitions,
        "topic_replication_factor": 1,
        "consumer_auto_offset_reset": "earliest",
        "processing_guarantee": "at_least_once",
    }
    if runtime == "service":
        return service_bare_app(app_id, source, sink, bootstrap, settings)
    if runtime != "stock":
        raise BareRuntimeUnavailable(f"unknown bare runtime {runtime!r}")
    app = faust.App(app_id, **settings)
    inbound, outbound = (
        app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        for name in (source, sink)
    )

    @app.agent(inbound)
    async def forward(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await outbound.send(key=event.key, value=event.value)

    return app


def service_bare_app(
    app_id: str, source: str, sink: str, bootstrap: str, settings: dict[str, Any]
) -> faust.App:
    """A hop on the service template's delivery path: records reach a route in the batches fetched
    (`orderstream.common.delivery.FastTransport`, the app's `routes`), outputs go through the
    services' `RecordProducer`, which Faust's producer flush waits for before every commit, with
    the services' default linger and commit interval. Built from the parts the template uses,
    not the template itself, so no decoding, metrics or DLQ is in the way."""
    if importlib.util.find_spec("orderstream.common.delivery") is None:
        raise BareRuntimeUnavailable("orderstream.common.delivery is not there yet; only `stock` runs")
    from orderstream.common import delivery
    from orderstream.common.producer import RecordProducer
    from orderstream.common.settings import ServiceSettings

    transport = getattr(delivery, "FastTransport", None)
    if transport is None:
        public = ", ".join(n for n in dir(delivery) if not n.startswith("_"))
        raise BareRuntimeUnavailable(
            f"orderstream.common.delivery has no FastTransport (it has: {public}); "
            "wire service_bare_app to what it has"
        )
    defaults = ServiceSettings.model_fields

    def lost(reason: str) -> None:
        print(f"bare hop {app_id}: {reason}", file=sys.stderr, flush=True)
        os._exit(70)

    records = RecordProducer(bootstrap, client_id=app_id, linger_ms=defaults["producer_linger_ms"].default,
                             on_fatal=lost)

    class RoutedApp(faust.App):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.routes: dict[str, Any] = {}  # read by FastConsumer when Faust builds it
            self.compacted_routes: set[str] = set()
            super().__init__(*args, **kwargs)

        def _new_transport(self) -> Any:
            return transport(self.conf.broker_consumer, self)

        def _new_producer(self) -> Any:
            class FlushingProducer(self.transport.Producer):  # type: ignore[name-defined,misc]
                async def flush(self) -> None:  # a commit waits for what the hop sent
                    await super().flush()
                    await records.flush()

            return FlushingProducer(self.transport, loop=self.loop, beacon=self.beacon)

        async def on_start(self) -> None:
            await super().on_start()
            records.start()

        async def on_stop(self) -> None:
            await super().on_stop()
            records.stop()

    if "commit_interval_s" in defaults:
        settings["broker_commit_interval"] = defaults["commit_interval_s"].default
    app = RoutedApp(app_id, producer_acks=-1, **settings)
    app.topics.add(app.topic(source, key_type=bytes, value_type=bytes, key_serializer="raw",
                             value_serializer="raw"))

    async def forward(partition: int, fetched: list[Any]) -> None:
        for record in fetched:
            await records.send(sink, record.key, record.value)

    app.routes[source] = forward
    return app


def bare_hop_main(argv: list[str]) -> None:
    """`bench_chain.py bare-hop RUNTIME APP_ID SOURCE SINK BOOTSTRAP PARTITIONS DATADIR`: one hop."""
    runtime, app_id, source, sink, bootstrap, partitions, datadir = argv
    app = make_bare_app(runtime, app_id, source, sink, bootstrap, int(partitions), datadir)
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


@dataclass
class BareStep:
    index: int
    rate: float | None
    seconds: float
    start: float = 0.0
    sent: int = 0
    first_sent: float = 0.0
    last_sent: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_received: float = 0.0
    last_received: float = 0.0
    failed: int = 0
    result: dict[str, Any] = field(default_factory=dict)


class BareChain:
    """Five forwarding hops in their own processes, fed and timed from here."""

    def __init__(self, args: argparse.Namespace, runtime: str, bootstrap: str, partitions: int) -> None:
        self.args = args
        self.runtime = runtime
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.run_id = uuid.uuid4().hex[:6]
        self.topics = [f"bench-bare-{self.run_id}.{i}" for i in range(BARE_HOPS + 1)]
        self.app_ids = [f"bench-bare-{self.run_id}-hop{i}" for i in range(BARE_HOPS)]
        self.hops: list[subprocess.Popen[bytes]] = []
        self.steps: list[BareStep] = []
        self.received = 0
        self.probes: set[int] = set()  # sequence numbers of the warm-up records that came through
        self.padding = b"\0" * (BARE_BYTES - BARE_RECORD.size)
        self.datadir = tempfile.mkdtemp(prefix="bench-bare-")  # the hops' Faust data, removed after
        self.logs = ROOT / ".cache" / "bench" / f"bare-{runtime}-hop"  # + <i>.log, the last run's

    async def run(self, rates: list[float | None]) -> list[dict[str, Any]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        try:
            await admin.create_topics([NewTopic(t, self.partitions, 1) for t in self.topics])
            await self.leaders(admin)
            self.start_hops()
            await producer.start()
            await consumer.start()
            last = [TopicPartition(self.topics[-1], p) for p in range(self.partitions)]
            consumer.assign(last)
            for tp in last:  # a new topic starts at 0: no offset lookup, which a new leader may refuse
                consumer.seek(tp, 0)
            receiver = asyncio.create_task(self.receive(consumer))
            try:
                await self.warm_up(producer, consumer)
                for rate in rates:
                    step = BareStep(len(self.steps), rate, self.args.seconds)
                    self.steps.append(step)
                    await self.run_step(step, producer)
            finally:
                receiver.cancel()
            return [s.result for s in self.steps]
        finally:
            self.stop_hops()
            with contextlib.suppress(Exception):
                await producer.stop()
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):  # our topics, and the ones Faust made for our apps
                names = [t for t in await admin.list_topics()
                         if t in self.topics or any(t.startswith(a + "-") for a in self.app_ids)]
                await admin.delete_topics(names)
            await admin.close()
            shutil.rmtree(self.datadir, ignore_errors=True)

    async def leaders(self, admin: AIOKafkaAdminClient, timeout_s: float = 30.0) -> None:
        """Until every partition of the new topics has a leader (before that, reads and writes fail)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            described = await admin.describe_topics(self.topics)
            if all(not d.get("error_code") and len(d.get("partitions", ())) == self.partitions
                   and all(p.get("leader", -1) >= 0 for p in d["partitions"]) for d in described):
                return
            await asyncio.sleep(0.2)

    def start_hops(self) -> None:
        self.logs.parent.mkdir(parents=True, exist_ok=True)
        for i, app_id in enumerate(self.app_ids):
            with open(f"{self.logs}{i}.log", "wb") as log:
                self.hops.append(subprocess.Popen(
                    [sys.executable, __file__, "bare-hop", self.runtime, app_id, self.topics[i],
                     self.topics[i + 1], self.bootstrap, str(self.partitions), f"{self.datadir}/{i}"],
                    stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                ))

    def stop_hops(self) -> None:
        for hop in self.hops:
            if hop.poll() is None:
                hop.terminate()
        for hop in self.hops:
            try:
                hop.wait(20)
            except subprocess.TimeoutExpired:
                hop.kill()
                hop.wait()

    async def receive(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.perf_counter()
            for records in batches.values():
                for record in records:
                    step, seq, sent = BARE_RECORD.unpack_from(record.value)
                    if step == BARE_PROBE:
                        self.probes.add(seq)
                        continue
                    s = self.steps[step]
                    if not s.latencies:
                        s.first_received = now
                    s.latencies.append(now - sent)
                    s.last_received = now
                    self.received += 1

    async def send(self, producer: AIOKafkaProducer, step: int, seq: int) -> None:
        value = BARE_RECORD.pack(step, seq, time.perf_counter()) + self.padding
        future = await producer.send(self.topics[0], value, key=b"k%d" % (seq % 64))
        if step != BARE_PROBE:
            future.add_done_callback(lambda f, s=self.steps[step]: self._delivered(f, s))

    @staticmethod
    def _delivered(future: asyncio.Future[Any], step: BareStep) -> None:
        if future.cancelled() or future.exception() is not None:
            step.failed += 1

    async def warm_up(self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer,
                      timeout_s: float = 180.0) -> None:
        """Until every hop has joined its group: twice in a row, a record of every key (so of every
        partition of every hop) crosses the chain within 5 s."""
        deadline = time.monotonic() + timeout_s
        logs = f"{self.logs}*.log"
        crossed = 0
        seq = 0
        while crossed < 2:
            if time.monotonic() > deadline:
                tps = [TopicPartition(t, p) for t in self.topics for p in range(self.partitions)]
                ends = await consumer.end_offsets(tps)
                counts = ", ".join(str(sum(ends[tp] for tp in tps if tp.topic == t)) for t in self.topics)
                raise TimeoutError(f"the bare chain did not carry records within {timeout_s:.0f}s; "
                                   f"records per topic: {counts} (hop logs in {logs})")
            if any(hop.poll() is not None for hop in self.hops):
                raise RuntimeError(f"a bare hop exited (logs in {logs})")
            round_ = range(seq, seq + 64)
            seq += 64
            for n in round_:
                await self.send(producer, BARE_PROBE, n)
            wait_until = time.monotonic() + 5.0
            while not self.probes.issuperset(round_) and time.monotonic() < wait_until:
                await asyncio.sleep(0.1)
            crossed = crossed + 1 if self.probes.issuperset(round_) else 0

    async def run_step(self, step: BareStep, producer: AIOKafkaProducer) -> None:
        processes = {f"hop{i}": [hop.pid] for i, hop in enumerate(self.hops)}
        processes["kafka"] = platform_processes()["kafka"]
        processes["bench"] = [os.getpid()]
        cpu = CpuMeter(processes)
        cpu.start()
        step.start = time.perf_counter()
        end = step.start + step.seconds
        window = self.args.bare_window
        while (now := time.perf_counter()) < end:
            if step.rate:
                due = int((now - step.start) * step.rate)
            else:  # at most `window` records in the chain: max measures its pace, not a queue's length
                due = min(step.sent + 200, len(step.latencies) + window)
            while step.sent < due:
                await self.send(producer, step.index, step.sent)
                step.last_sent = time.perf_counter()
                if not step.sent:
                    step.first_sent = step.last_sent
                step.sent += 1
            await asyncio.sleep(0.002 if step.rate or step.sent >= due else 0)
        await producer.flush()
        drain = await self.drain(step)
        used = cpu.stop()
        hops = [v for k, v in used.items() if k.startswith("hop")]
        used_total = {"hops": sum(v for v in hops if v is not None) if None not in hops else None,
                      "kafka": used["kafka"], "bench": used["bench"]}
        got = sorted(step.latencies)
        step.result = {
            "offered_per_s": step.rate if step.rate is not None else "max",
            "seconds": step.seconds,
            "sent": step.sent,
            "sent_per_s": round(per_s(step.sent, step.first_sent, step.last_sent), 1),
            "received": len(got),
            "received_per_s": round(per_s(len(got), step.first_received, step.last_received), 1),
            "lost": step.sent - len(got),
            "send_failed": step.failed,
            "latency_ms": {"p50": ms(pct(got, 50)), "p99": ms(pct(got, 99)), "p99.9": ms(pct(got, 99.9)),
                           "max": ms(got[-1] if got else None)},
            "drain": drain,
            "cpu_ms": {k: (round(v, 1) if v is not None else None) for k, v in used.items()},
            "cpu_ms_per_record": per_unit(used_total, len(got)),
        }
        r = step.result
        label = "max" if step.rate is None else f"{step.rate:g}"
        print(f"  bare {self.runtime:<7} {label:>5}/s: sent {r['sent_per_s']:8.1f}/s received "
              f"{r['received_per_s']:8.1f}/s | p50 {fmt(r['latency_ms']['p50'])} p99 "
              f"{fmt(r['latency_ms']['p99'])} ms | lost {r['lost']} | {drain}", flush=True)

    async def drain(self, step: BareStep) -> str:
        started = time.perf_counter()
        progress_at, seen = started, -1
        while len(step.latencies) < step.sent:
            await asyncio.sleep(0.1)
            now = time.perf_counter()
            if self.received != seen:
                seen, progress_at = self.received, now
            if now - progress_at > self.args.drain_idle:
                return f"stalled with {step.sent - len(step.latencies)} records missing"
            if now - started > self.args.drain_max:
                return f"gave up after {self.args.drain_max:.0f}s"
        return f"drained in {time.perf_counter() - started:.1f}s"


async def order_partitions(bootstrap: str, prefix: str) -> int:
    """The partition count of order.commands: the bare chain's topics get the same."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.describe_topics([prefix + "order.commands"])
    finally:
        await admin.close()
    partitions = found[0].get("partitions") if found and not found[0].get("error_code") else None
    if partitions:
        return len(partitions)
    return int(os.environ.get("ORDERSTREAM_PARTITIONS", DEFAULT_PARTITIONS))


# -- output ----------------------------------------------------------------------------------


def fmt(value: Any, width: int = 0) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    else:
        text = str(value)
    return text.rjust(width)


def chain_tables(results: list[dict[str, Any]], idle: dict[str, float | None]) -> str:
    head = (f"{'shape':<7}{'offered/s':>10}{'sent/s':>9}{'accept/s':>9}{'report/s':>9}"
            f"{'rep p50':>9}{'p99':>9}{'p99.9':>9}{'ans p50':>9}{'p99':>8}{'lost':>6}{'late':>6}"
            f"{'refused':>8}{'lag p99':>8}")
    lines = ["order -> first execution report (ms; each rate from its first event to its last)", head]
    for r in results:
        lines.append(
            f"{r['shape']:<7}{fmt(r['offered_per_s'], 10)}{fmt(r['sent_per_s'], 9)}"
            f"{fmt(r['accepted_per_s'], 9)}"
            f"{fmt(r['reported_per_s'], 9)}{fmt(r['report_ms']['p50'], 9)}{fmt(r['report_ms']['p99'], 9)}"
            f"{fmt(r['report_ms']['p99.9'], 9)}{fmt(r['answer_ms']['p50'], 9)}{fmt(r['answer_ms']['p99'], 8)}"
            f"{fmt(r['lost'], 6)}{fmt(r['late'], 6)}{fmt(sum(r['refused'].values()), 8)}"
            f"{fmt(r['client_loop_lag_p99_ms'], 8)}"
        )
    names = [*SERVICES, *SERVERS, "bench"]
    short = {"collateral": "collat", "execution": "exec", "collector": "collect", "ferretdb": "ferret"}
    columns = "".join(f"{short.get(n, n):>9}" for n in names)
    lines += ["", "CPU ms per reported order (step + drain; 'bench' is this client)",
              f"{'shape':<7}{'offered/s':>10}{columns}{'total':>9}"]
    for r in results:
        cpu = r["cpu_ms_per_order"]
        total = sum(v for v in cpu.values() if v is not None)
        lines.append(f"{r['shape']:<7}{fmt(r['offered_per_s'], 10)}"
                     + "".join(fmt(cpu.get(n), 9) for n in names) + fmt(round(total, 3), 9))
    lines.append(f"{'idle':<7}{'ms/s':>10}" + "".join(fmt(idle.get(n), 9) for n in names))
    return "\n".join(lines)


def bare_table(runtime: str, results: list[dict[str, Any]]) -> str:
    lines = [f"bare chain ({BARE_HOPS} Faust hops, {runtime}): first-topic send -> last-topic receipt (ms)",
             f"{'offered/s':>10}{'sent/s':>10}{'recv/s':>10}{'p50':>9}{'p99':>9}{'p99.9':>9}{'lost':>7}"
             f"{'hops ms':>9}{'kafka ms':>9}{'bench ms':>9}  (CPU per record)"]
    for r in results:
        cpu = r["cpu_ms_per_record"]
        lines.append(f"{fmt(r['offered_per_s'], 10)}{fmt(r['sent_per_s'], 10)}{fmt(r['received_per_s'], 10)}"
                     f"{fmt(r['latency_ms']['p50'], 9)}{fmt(r['latency_ms']['p99'], 9)}"
                     f"{fmt(r['latency_ms']['p99.9'], 9)}{fmt(r['lost'], 7)}{fmt(cpu['hops'], 9)}"
                     f"{fmt(cpu['kafka'], 9)}{fmt(cpu['bench'], 9)}")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_chain.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--use-running", action="store_true",
                        help="use the platform `orderstream up` started")
    parser.add_argument("--gateway", help="gateway base URL (default: http://127.0.0.1:<gateway web port>)")
    parser.add_argument("--quick", action="store_true", help="5 s steps (unless --seconds is given)")
    parser.add_argument("--seconds", type=float, help="length of each step (default 10; 5 with --quick)")
    parser.add_argument("--rates", default="10,100,300,1000,max",
                        help="offered orders/s of the steps; max: as fast as the gateway answers")
    parser.add_argument("--shapes", default="busy,sparse", help="busy (8 traders) and/or sparse")
    parser.add_argument("--sparse-traders", type=int, default=40, help="traders of the sparse shape (>= 40)")
    parser.add_argument("--in-flight", type=int, default=64, help="unanswered requests per connection")
    parser.add_argument("--drain-idle", type=float, default=15.0,
                        help="a drain ends when nothing moved for this long (s)")
    parser.add_argument("--drain-max", type=float, default=1200.0,
                        help="longest drain (s); a drain that still moves is waited for up to this")
    parser.add_argument("--bare-runtime", default="stock", help="stock, service, or both (stock,service)")
    parser.add_argument("--bare-window", type=int, default=5000,
                        help="records in the bare chain at once at `max` (unbounded, a 10 s step "
                             "would queue minutes of records)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare chain")
    parser.add_argument("--no-chain", action="store_true", help="only the bare chain")
    parser.add_argument("--warm-up", type=float, default=5.0,
                        help="seconds of unmeasured traffic at 20 orders/s first (0: none)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path,
                        help="where the results go (default .cache/bench/chain-<time>.json)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (5.0 if args.quick else 10.0)
    try:
        args.rate_list = [
            None if r.strip() == "max" else float(r) for r in args.rates.split(",") if r.strip()
        ]
    except ValueError:
        parser.error(f"--rates: numbers or `max`, comma separated, not {args.rates!r}")
    if any(r is not None and r <= 0 for r in args.rate_list):
        parser.error("--rates must be positive")
    args.shape_list = [s.strip() for s in args.shapes.split(",") if s.strip()]
    if unknown := set(args.shape_list) - set(SHAPES):
        parser.error(f"--shapes: unknown {sorted(unknown)}; known: {sorted(SHAPES)}")
    args.runtimes = [r.strip() for r in args.bare_runtime.split(",") if r.strip()]
    if unknown := set(args.runtimes) - {"stock", "service"}:
        parser.error(f"--bare-runtime: unknown {sorted(unknown)}; known: stock, service")
    if args.sparse_traders < 40:
        parser.error("--sparse-traders: at least 40")
    return args


async def bench(args: argparse.Namespace, plat: Platform, out: dict[str, Any]) -> int:
    status = 0
    if not args.no_chain:
        chain = Chain(args, plat)
        print(f"chain: shapes {', '.join(args.shape_list)}; offered {args.rates} orders/s; "
              f"{args.seconds:g} s per step", flush=True)
        try:
            async with aiohttp.ClientSession() as http:
                status = await chain.run(http, args.shape_list, args.rate_list)
            out["checks"] = "passed" if status == 0 else "failed"
        finally:
            out["chain"] = [s.result for s in chain.steps if s.result]
            out["idle_cpu_ms_per_s"] = chain.idle_cpu
    if not args.no_bare:
        partitions = await order_partitions(plat.bootstrap, plat.prefix)
        out["bare"] = {}
        for runtime in args.runtimes:
            print(f"bare chain ({runtime}): {BARE_HOPS} hops, {partitions} partitions", flush=True)
            try:
                out["bare"][runtime] = await BareChain(args, runtime, plat.bootstrap, partitions).run(
                    args.rate_list
                )
            except (BareRuntimeUnavailable, TimeoutError, RuntimeError) as exc:
                print(f"  bare chain ({runtime}) did not run: {exc}", flush=True)
                out["bare"][runtime] = {"error": str(exc)}
    return status


def report(out: dict[str, Any]) -> None:
    print()
    chain_top = max((r["reported_per_s"] for r in out.get("chain", [])), default=None)
    if out.get("chain"):
        print(chain_tables(out["chain"], out.get("idle_cpu_ms_per_s", {})))
        print()
    out["ratio"] = {}
    for runtime, results in out.get("bare", {}).items():
        if isinstance(results, dict):
            print(f"bare chain ({runtime}): {results['error']}")
            continue
        print(bare_table(runtime, results))
        bare_top = max((r["received_per_s"] for r in results), default=0.0)
        if chain_top and bare_top:
            out["ratio"][runtime] = round(chain_top / bare_top, 4)
            print(f"top rate: chain {chain_top:.1f} orders/s, bare chain ({runtime}) {bare_top:.1f} "
                  f"records/s: ratio {chain_top / bare_top:.3f}")
        print()
    if any("42901" in r["refused"] for r in out.get("chain", [])):
        print("the gateway refused orders over its per-key rate limit (42901): start it with a higher "
              "ORDERSTREAM_GATEWAY_ORDERS_PER_S / _ORDERS_BURST, or let the bench start the platform")
    if "checks" in out:
        print(f"end-state checks: {out['checks']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a new topic's first sends retry until it has a leader; aiokafka logs each retry as a warning
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    out: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    plat = start_platform(args)
    out["platform"] = {"gateway": plat.gateway, "bootstrap": plat.bootstrap, "started_by_bench": plat.started}
    status = 1
    try:
        status = asyncio.run(bench(args, plat, out))
    finally:
        report(out)
        path = args.json or ROOT / ".cache" / "bench" / f"chain-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, default=str))
        print(f"results: {path}")
        stop_platform(plat)
    return status


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "bare-hop":
        bare_hop_main(sys.argv[2:])
    else:
        sys.exit(main())

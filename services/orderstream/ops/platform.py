"""Run the whole platform on one machine: `orderstream up | down | status` (what `make up` calls).

`up`:
1. Kafka and MongoDB: the servers named by KAFKA_BOOTSTRAP_SERVERS / MONGO_URL; else, with a
   Docker engine, `docker compose up` of docker-compose.yml; else the local Apache Kafka and
   FerretDB of deploy/local/infra.py.
2. Creates the catalog's topics with their partition counts, and publishes the instrument
   set of deploy/instruments.json to `ref.instruments`.
3. Starts a supervisor (a detached process) that runs every service of deploy/local/Procfile
   as its own process with its own log, and restarts one that dies: at once, unless it dies
   within CRASH_LOOP_S of its start (then with a backoff). Each worker joins its group with a
   stable instance id (static membership), so a restarted one takes its partitions back at once.
   `--replicas N` (or ORDERSTREAM_REPLICAS) runs N workers of each worker service, each with
   its own instance id, web port and log, and Faust standby replicas of their tables
   (`replica_plan`); the gateway stays one process, and so does the router while FIX venues
   are configured (a FIX venue accepts one session).
4. Waits until every service answers /healthz, then creates the demo accounts (alice, bob)
   with API keys and deposits through the gateway's admin API, and prints where it listens.

Everything it keeps lives in the run folder (`.cache/platform`, ORDERSTREAM_RUN_DIR moves it):
the supervisor's pid and log, `logs/<service>.log`, and `credentials.json` (mode 0600) with
the admin and demo keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[3]
PROCFILE = ROOT / "deploy" / "local" / "Procfile"
INSTRUMENTS = ROOT / "deploy" / "instruments.json"
INFRA = ROOT / "deploy" / "local" / "infra.py"
SETTINGS = {
    "gateway": "orderstream.gateway.settings:GatewaySettings",
    "collateral": "orderstream.collateral.settings:CollateralSettings",
    "router": "orderstream.router.settings:RouterSettings",
    "matcher": "orderstream.matcher.settings:MatcherSettings",
    "execution": "orderstream.execution.settings:ExecutionSettings",
    "collector": "orderstream.collector.settings:CollectorSettings",
}
DEMO_ACCOUNTS = {
    "alice": {"USD": "1000000", "BTC": "20", "ETH": "300", "SOL": "5000"},
    "bob": {"USD": "1000000", "BTC": "20", "ETH": "300", "SOL": "5000"},
}
READY_TIMEOUT_S = 180.0
STOP_GRACE_S = 20.0
CRASH_LOOP_S = 10.0  # a service that dies sooner after its start is in a crash loop: back off
REPLICA_SESSION_TIMEOUT_S = 6  # with replicas: the broker's least; heartbeats run in the consumer thread
REPLICA_PORT_STEP = 1000  # replica i of a worker serves /healthz on its WEB_PORT + i * this
#: Services that run one process whatever --replicas says: the gateway holds no partitions (any
#: number can serve, but `up` prints one address), the others are the consumer-group workers.
SINGLE = frozenset({"gateway"})


def run_dir() -> Path:
    return Path(os.environ.get("ORDERSTREAM_RUN_DIR", ROOT / ".cache" / "platform")).resolve()


def say(msg: str) -> None:
    print(f"[orderstream] {msg}", flush=True)


def procfile(path: Path = PROCFILE) -> dict[str, list[str]]:
    """Service name -> command, with `python` meaning this interpreter."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            argv = shlex.split(command)
            out[name.strip()] = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    return out


def _settings_default(service: str, field: str) -> Any:
    module, _, cls = SETTINGS[service].partition(":")
    info = getattr(importlib.import_module(module), cls).model_fields[field]
    return info.get_default(call_default_factory=True)


def web_port(service: str, env: dict[str, str], replica: int = 0) -> int:
    """The /healthz port of a service's replica under `env`: its WEB_PORT setting, else its
    settings' default; replica i adds i * REPLICA_PORT_STEP."""
    given = env.get(f"ORDERSTREAM_{service.upper()}_WEB_PORT")
    port = int(given) if given else int(_settings_default(service, "web_port"))
    return port + replica * REPLICA_PORT_STEP if port else 0


def fix_venues_configured(env: dict[str, str]) -> bool:
    """Whether the router is given FIX venues under `env` (its default names one)."""
    given = env.get("ORDERSTREAM_ROUTER_FIX_VENUES")
    return bool(json.loads(given) if given else _settings_default("router", "fix_venues"))


def replica_plan(replicas: int, env: dict[str, str]) -> tuple[dict[str, int], list[str]]:
    """Workers per service for `--replicas N`, and what was held back and why."""
    if replicas < 1:
        raise ValueError(f"--replicas must be at least 1, not {replicas}")
    plan = {s: 1 if s in SINGLE else replicas for s in SETTINGS}
    notes: list[str] = []
    if replicas > 1 and fix_venues_configured(env):
        plan["router"] = 1
        notes.append("router: one worker, since FIX venues are configured (a FIX venue accepts one "
                     "session); ORDERSTREAM_ROUTER_FIX_VENUES={} lifts it")
    partitions = int(env.get("ORDERSTREAM_PARTITIONS") or 4)
    if replicas > partitions:
        notes.append(f"{replicas} workers per service for {partitions} partitions: "
                     f"{replicas - partitions} of each will idle")
    return plan, notes


def replica_name(service: str, replica: int) -> str:
    """The supervisor's name of a replica (and of its log): the service's for the first one."""
    return service if replica == 0 else f"{service}-{replica}"


# -- the supervisor -------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started: float = 0.0
    crashes_in_a_row: int = 0


def child_env(service: str, replica: int = 0, replicas: int = 1,
              env: dict[str, str] | None = None) -> dict[str, str]:
    """A replica's environment: static group membership under a stable name (`<service>-<i>`),
    so that a restarted worker takes its partitions back at once (an INSTANCE_ID set empty keeps
    dynamic membership); with more than one worker per service, each its own web port and data
    folder, N-1 Faust standby replicas of its tables and a session timeout of
    REPLICA_SESSION_TIMEOUT_S (a worker that stays dead hands its partitions to the others
    after it), unless STANDBY_REPLICAS or SESSION_TIMEOUT_S are set."""
    out = dict(os.environ if env is None else env)
    up = service.upper()
    out.setdefault(f"ORDERSTREAM_{up}_INSTANCE_ID", f"{service}-0")
    if out[f"ORDERSTREAM_{up}_INSTANCE_ID"]:
        out[f"ORDERSTREAM_{up}_INSTANCE_ID"] = f"{service}-{replica}"
    if service not in SINGLE:
        out.setdefault(f"ORDERSTREAM_{up}_STANDBY_REPLICAS", str(replicas - 1))
        if replicas > 1:
            out.setdefault(f"ORDERSTREAM_{up}_SESSION_TIMEOUT_S", str(REPLICA_SESSION_TIMEOUT_S))
    if replica:
        data_dir = out.get(f"ORDERSTREAM_{up}_DATA_DIR") or str(_settings_default(service, "data_dir"))
        out[f"ORDERSTREAM_{up}_WEB_PORT"] = str(web_port(service, out, replica))
        out[f"ORDERSTREAM_{up}_DATA_DIR"] = os.path.join(data_dir, f"replica-{replica}")
    return out


def supervise(folder: Path) -> int:
    """Run every Procfile service (ORDERSTREAM_REPLICAS workers of each worker service), each
    with its own log; restart the ones that die; stop on SIGTERM."""
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    plan, _ = replica_plan(int(os.environ.get("ORDERSTREAM_REPLICAS") or 1), dict(os.environ))
    children = [Child(replica_name(name, i), argv, child_env(name, i, plan[name]),
                      web_port(name, dict(os.environ), i))
                for name, argv in procfile().items() for i in range(plan[name])]
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    (folder / "supervisor.pid").write_text(str(os.getpid()))
    state = folder / "services.json"
    try:
        while not stopping:
            now = time.monotonic()
            for c in children:
                if c.proc is not None and c.proc.poll() is not None:
                    # at once after a run of a while; backoff only for a crash loop
                    c.crashes_in_a_row = c.crashes_in_a_row + 1 if now - c.started < CRASH_LOOP_S else 0
                    delay = min(30.0, 2.0 ** (c.crashes_in_a_row - 1)) if c.crashes_in_a_row else 0.0
                    say(f"{c.name} exited with {c.proc.returncode}; restarting in {delay:.0f}s")
                    c.proc, c.restarts, c.next_start = None, c.restarts + 1, now + delay
                if c.proc is None and now >= c.next_start:
                    with open(logs / f"{c.name}.log", "ab") as log:
                        c.proc = subprocess.Popen(c.argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                                  env=c.env)
                    c.started = now
                    say(f"started {c.name} (pid {c.proc.pid})")
            snapshot = {c.name: {"pid": c.proc.pid if c.proc else None, "restarts": c.restarts,
                                 "port": c.port} for c in children}
            state.with_suffix(".tmp").write_text(json.dumps(snapshot))
            state.with_suffix(".tmp").replace(state)  # a reader never sees half of it
            time.sleep(0.5)
    finally:
        for c in children:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for c in children:
            if c.proc is not None:
                try:
                    c.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    c.proc.kill()
        say("every service stopped")
        (folder / "supervisor.pid").unlink(missing_ok=True)
        state.unlink(missing_ok=True)
    return 0


def supervised(folder: Path) -> dict[str, Any]:
    """What the supervisor last wrote of each service it runs (pid, restarts); {} when none runs."""
    with contextlib.suppress(OSError, ValueError):
        children: dict[str, Any] = json.loads((folder / "services.json").read_text())
        return children
    return {}


def supervisor_pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "supervisor.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


# -- infrastructure ------------------------------------------------------------------


def docker_engine() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def infrastructure(folder: Path) -> dict[str, str]:
    """KAFKA_BOOTSTRAP_SERVERS and MONGO_URL of the servers to use, starting local ones if needed."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("MONGO_URL"):
        say(
            f"using Kafka at {os.environ['KAFKA_BOOTSTRAP_SERVERS']} and MongoDB at {os.environ['MONGO_URL']}"
        )
        return {k: os.environ[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGO_URL")}
    started = subprocess.run(
        [sys.executable, str(INFRA), "start"], check=True, capture_output=True, text=True
    ).stdout
    if any(line.startswith("started=") and line.strip() != "started=" for line in started.splitlines()):
        (folder / "infra-started").touch()  # `down` stops only servers `up` started
    out = subprocess.run(
        [sys.executable, str(INFRA), "env"], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


async def publish_instruments(bootstrap: str, prefix: str, documents: list[dict[str, Any]]) -> list[str]:
    """Publish instruments (deploy/instruments.json) to ref.instruments (compacted, keyed by symbol)."""
    from aiokafka import AIOKafkaProducer

    from orderstream.common import records as r
    from orderstream.common.codec import AvroCodec, schema_ids
    from orderstream.common.records import ALL_RECORDS

    codec = AvroCodec(ALL_RECORDS, schema_ids(os.environ.get("SCHEMA_REGISTRY_URL")))
    items = [r.Instrument.model_validate(doc) for doc in documents]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for ins in items:
            await producer.send_and_wait(
                prefix + "ref.instruments", codec.encode(ins), key=ins.symbol.encode()
            )
    finally:
        await producer.stop()
    return [i.symbol for i in items]


async def wait_healthy(ports: dict[str, int], timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """Every service's /healthz body once all answer 200; TimeoutError naming the laggards."""
    deadline = time.monotonic() + timeout
    bodies: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
        while True:
            bodies = await health(http, ports)
            waiting = sorted(s for s, b in bodies.items() if b.get("status") != "ok")
            if not waiting:
                return bodies
            if time.monotonic() > deadline:
                raise TimeoutError(f"not healthy after {timeout:.0f}s: {', '.join(waiting)}")
            await asyncio.sleep(1)


async def health(http: aiohttp.ClientSession, ports: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for service, port in ports.items():
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                out[service] = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            out[service] = {"status": "down", "error": type(exc).__name__}
    return out


async def seed_accounts(base: str, creds: dict[str, Any]) -> dict[str, Any]:
    """alice and bob with keys and deposits, made once (the caller keeps them in credentials.json)."""
    from orderstream.client import GatewayClient

    admin = (creds["admin"]["key_id"], creds["admin"]["secret"])
    async with aiohttp.ClientSession() as http:
        gw = GatewayClient(base, *admin)
        for account, deposits in DEMO_ACCOUNTS.items():
            known = creds["accounts"].get(account)
            if (
                known
                and (
                    await GatewayClient(base, known["key_id"], known["secret"]).call(
                        http, "GET", "/api/v1/balances"
                    )
                )[0]
                == 200
            ):
                continue
            made = await gw.ok(http, "POST", "/api/v1/admin/accounts", {"account_id": account})
            creds["accounts"][account] = {"key_id": made["key_id"], "secret": made["secret"]}
            for asset, amount in deposits.items():
                await gw.ok(
                    http,
                    "POST",
                    "/api/v1/admin/deposits",
                    {"account_id": account, "asset": asset, "amount": str(Decimal(amount))},
                )
            await wait_for_balances(http, GatewayClient(base, made["key_id"], made["secret"]), deposits)
            say(f"created account {account} with deposits {deposits}")
    return creds


async def wait_for_balances(http: aiohttp.ClientSession, trader: Any, deposits: dict[str, str],
                            timeout_s: float = 60.0) -> None:
    """Until the gateway shows a new account's deposits: `up` returns a platform ready to trade."""
    want = {asset: Decimal(amount) for asset, amount in deposits.items()}
    deadline = time.monotonic() + timeout_s
    while True:
        balances = (await trader.ok(http, "GET", "/api/v1/balances"))["balances"]
        have = {a: Decimal(b["free"]) + Decimal(b["held"]) for a, b in balances.items()}
        if all(have.get(asset) == amount for asset, amount in want.items()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"deposits not applied after {timeout_s:.0f} s: want {deposits}, "
                               f"the gateway shows {balances}; see the collateral log")
        await asyncio.sleep(0.2)


def load_credentials(folder: Path) -> dict[str, Any]:
    path = folder / "credentials.json"
    if path.exists():
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    return {
        "admin": {"key_id": f"admin-{secrets.token_hex(4)}", "secret": secrets.token_urlsafe(32)},
        "accounts": {},
    }


def save_credentials(folder: Path, creds: dict[str, Any]) -> None:
    path = folder / "credentials.json"
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(creds, indent=2))


# -- commands ----------------------------------------------------------------------------


def up(args: argparse.Namespace) -> int:
    from orderstream.common.topics import create_topics

    folder = run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    replicas = args.replicas
    if replicas is None:
        replicas = int(os.environ.get("ORDERSTREAM_REPLICAS") or 1)
    if docker_engine() and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        say("a Docker engine is there: docker compose up")
        if replicas > 1:
            say("--replicas applies to the local supervisor only: docker compose runs one of each")
        creds = load_credentials(folder)
        save_credentials(folder, creds)
        compose_env = {
            **os.environ,
            "ORDERSTREAM_ADMIN_KEY_ID": creds["admin"]["key_id"],
            "ORDERSTREAM_ADMIN_SECRET": creds["admin"]["secret"],
        }
        subprocess.run(
            ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "up", "-d", "--build", "--wait"],
            check=True,
            env=compose_env,
        )
        (folder / "compose-started").touch()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
            "MONGO_URL": "mongodb://127.0.0.1:27017/",
        }
        ports = {"gateway": 8080}
    else:
        env = {**os.environ, **infrastructure(folder), "ORDERSTREAM_REPLICAS": str(replicas)}
        plan, notes = replica_plan(replicas, env)
        for note in notes:
            say(note)
        ports = {replica_name(s, i): web_port(s, env, i) for s in SETTINGS for i in range(plan[s])}
        if replicas > 1:
            say("workers per service: " + ", ".join(f"{s} {n}" for s, n in plan.items()))
    creds = load_credentials(folder)
    save_credentials(folder, creds)
    prefix = env.get("ORDERSTREAM_TOPIC_PREFIX", "")
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    created = asyncio.run(
        create_topics(
            bootstrap,
            prefix=prefix,
            partitions=int(env["ORDERSTREAM_PARTITIONS"]) if env.get("ORDERSTREAM_PARTITIONS") else None,
        )
    )
    say(f"topics: {len(created)} created")
    symbols = asyncio.run(
        publish_instruments(bootstrap, prefix, json.loads(INSTRUMENTS.read_text())["instruments"])
    )
    say(f"instruments: {', '.join(symbols)}")
    if not (folder / "compose-started").exists():
        if supervisor_pid(folder) is None:
            env.setdefault("ORDERSTREAM_GATEWAY_ADMIN_KEY_ID", creds["admin"]["key_id"])
            env.setdefault("ORDERSTREAM_GATEWAY_ADMIN_SECRET", creds["admin"]["secret"])
            with open(folder / "supervisor.log", "ab") as log:
                subprocess.Popen(
                    [sys.executable, "-m", "orderstream.ops.platform", "supervise"],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            say(f"supervisor started; service logs in {folder / 'logs'}")
        else:
            say("the services already run")
    say("waiting for every service's /healthz ...")
    asyncio.run(wait_healthy(ports))
    base = f"http://127.0.0.1:{ports['gateway']}"
    creds = asyncio.run(seed_accounts(base, creds))
    save_credentials(folder, creds)
    say("Orderstream is up.")
    say(f"  REST       {base}/api/v1   (OpenAPI: {base}/api/v1/openapi.json)")
    say(f"  WebSocket  {base.replace('http', 'ws')}/ws")
    fix_port = env.get("ORDERSTREAM_GATEWAY_FIX_PORT", "9878")
    if fix_port != "0":
        say(f"  FIX 4.4    tcp://127.0.0.1:{fix_port} (TargetCompID ORDERSTREAM; SenderCompID = Username"
            f" = key id, Password = secret), FIX JSON at {base.replace('http', 'ws')}/fix")
    say(f"  keys       {folder / 'credentials.json'} (admin, alice, bob)")
    say("  next       make demo   |   make status   |   make down")
    return 0


def down(_: argparse.Namespace) -> int:
    folder = run_dir()
    pid = supervisor_pid(folder)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S + 10
        while supervisor_pid(folder) is not None and time.monotonic() < deadline:
            time.sleep(0.3)
        say("services stopped")
    if (folder / "compose-started").exists():
        subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "down"], check=False)
        (folder / "compose-started").unlink()
    if (folder / "infra-started").exists():
        subprocess.run([sys.executable, str(INFRA), "stop"], check=False)
        (folder / "infra-started").unlink()
    return 0


def status(_: argparse.Namespace) -> int:
    folder = run_dir()
    pid = supervisor_pid(folder)
    say(f"supervisor: {'running, pid ' + str(pid) if pid else 'not running'}")
    children = supervised(folder)
    env = dict(os.environ)
    ports = {s: web_port(s, env) for s in SETTINGS}
    ports.update({name: int(child["port"]) for name, child in children.items() if child.get("port")})

    async def probe() -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            return await health(http, ports)

    bodies = asyncio.run(probe())
    healthy = True
    for service, body in bodies.items():
        child = children.get(service, {})
        healthy &= body.get("status") == "ok"
        extra = f"partitions {body['assigned_partitions']}" if "assigned_partitions" in body else ""
        pid_text, restarts = str(child.get("pid", "-")), str(child.get("restarts", "-"))
        say(
            f"  {service:<13} {body.get('status', '?'):<8} port {ports[service]:<5} pid {pid_text:<7} "
            f"restarts {restarts:<3} {extra}"
        )
    subprocess.run([sys.executable, str(INFRA), "status"], check=False)
    return 0 if healthy and pid else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orderstream-platform", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("supervise").set_defaults(func=lambda _: supervise(run_dir()))
    p = sub.add_parser("up")
    p.add_argument("--replicas", type=int, default=None,
                   help="workers per worker service (default ORDERSTREAM_REPLICAS, else 1)")
    p.set_defaults(func=up)
    sub.add_parser("down").set_defaults(func=down)
    sub.add_parser("status").set_defaults(func=status)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

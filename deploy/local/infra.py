#!/usr/bin/env python3
"""Docker-free local infrastructure: a real Apache Kafka broker, a MongoDB-wire server and a FIX venue.

Kafka is Apache's own broker (KRaft, single node) run from the jars Maven
resolves from Maven Central (deploy/local/kafka/pom.xml). MongoDB is FerretDB
with its SQLite backend, built from the Go module proxy through our launcher
(deploy/local/ferretdb). The FIX venue ("fixexec") is QuickFIX/J's example
Executor from Maven Central (deploy/local/fix-executor/pom.xml): a FIX 4.4
acceptor, EXEC to ORDERSTREAM, that fills marketable orders at 0.50. Everything
lives under one git-ignored cache folder.

    infra.py install [NAME...]   resolve the Kafka and Executor jars, build FerretDB (cached)
    infra.py start [NAME...]     install if needed, start, wait until ready (idempotent)
    infra.py stop [NAME...]      stop what runs (SIGTERM, then SIGKILL after a grace period)
    infra.py status              one line per server; exit 0 only when all run
    infra.py env                 KAFKA_BOOTSTRAP_SERVERS=... and MONGO_URL=... lines
    infra.py clean               stop, then delete data and logs (keeps the installs)

NAME is kafka, mongo or fixexec; no NAME means all three.

Environment: ORDERSTREAM_CACHE (default <repo>/.cache), ORDERSTREAM_KAFKA_PORT
(19092; the controller uses the next port), ORDERSTREAM_MONGO_PORT (27117),
ORDERSTREAM_FIXEXEC_PORT (9880), ORDERSTREAM_KAFKA_HEAP (768m). Standard library
only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ORDERSTREAM_CACHE", ROOT / ".cache")).resolve()
HOST = "127.0.0.1"
KAFKA_PORT = int(os.environ.get("ORDERSTREAM_KAFKA_PORT", "19092"))
CONTROLLER_PORT = KAFKA_PORT + 1
MONGO_PORT = int(os.environ.get("ORDERSTREAM_MONGO_PORT", "27117"))
FIXEXEC_PORT = int(os.environ.get("ORDERSTREAM_FIXEXEC_PORT", "9880"))
KAFKA_HEAP = os.environ.get("ORDERSTREAM_KAFKA_HEAP", "768m")
READY_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0

RUN = CACHE / "run"
LOGS = CACHE / "logs"


class InfraError(RuntimeError):
    """A server could not be installed or started; the message says why and where to look."""


def _log(msg: str) -> None:
    print(f"[infra] {msg}", file=sys.stderr, flush=True)


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def _run(cmd: list[str], cwd: Path, what: str, env: dict[str, str] | None = None) -> None:
    _log(f"{what}: {' '.join(cmd)}")
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise InfraError(
            f"{what} failed (exit {res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
        )


def spawn(cmd: list[str], logfile: Path, cwd: Path, keep_stdin: bool = False) -> subprocess.Popen[bytes]:
    """Start cmd in its own session, stdout and stderr appended to logfile.

    With keep_stdin its stdin is a pipe whose write end the child holds too, for a server that
    quits when its stdin closes: it never reads EOF, even after we exit, and it still dies by signal.
    """
    read_end, write_end = os.pipe() if keep_stdin else (subprocess.DEVNULL, None)
    try:
        with logfile.open("ab") as out:
            return subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=read_end, cwd=cwd,
                start_new_session=True, pass_fds=() if write_end is None else (write_end,),
            )
    finally:
        if write_end is not None:
            os.close(read_end)
            os.close(write_end)


@dataclass
class Server:
    """One locally managed server process."""

    name: str
    port: int
    install: Callable[[], None]
    prepare: Callable[[], list[str]]  # returns the command line; may format storage
    ready_line: str  # printed in its log once it serves clients
    keep_stdin: bool = False  # it quits when its stdin closes (see spawn)

    @property
    def pidfile(self) -> Path:
        return RUN / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return LOGS / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            self.pidfile.unlink(missing_ok=True)
            return None
        # A recycled pid belongs to someone else: our processes all name the cache folder.
        if str(CACHE).encode() not in cmdline:
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None and _port_open(self.port)

    def start(self) -> bool:
        """Start unless running; True when this call started it."""
        if self.pid() is not None:
            self._await_ready(None)
            _log(f"{self.name} already running on {HOST}:{self.port}")
            return False
        if _port_open(self.port):
            raise InfraError(
                f"port {self.port} is taken by another process; set "
                f"ORDERSTREAM_{self.name.upper()}_PORT to a free port"
            )
        self.install()
        cmd = self.prepare()
        RUN.mkdir(parents=True, exist_ok=True)
        LOGS.mkdir(parents=True, exist_ok=True)
        offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        proc = spawn(cmd, self.logfile, CACHE, self.keep_stdin)
        self.pidfile.write_text(str(proc.pid))
        try:
            self._await_ready(offset, proc)
        except InfraError:
            self.stop()
            raise
        _log(f"{self.name} ready on {HOST}:{self.port} (pid {proc.pid}, log {self.logfile})")
        return True

    def _await_ready(self, offset: int | None, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise InfraError(
                    f"{self.name} exited with {proc.returncode}; see {self.logfile}:\n{self._tail()}"
                )
            seen = offset is None or self.ready_line.encode() in self.logfile.read_bytes()[offset:]
            if seen and _port_open(self.port):
                return
            time.sleep(0.25)
        raise InfraError(
            f"{self.name} not ready after {READY_TIMEOUT_S:.0f}s; see {self.logfile}:\n{self._tail()}"
        )

    def _tail(self) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    def stop(self) -> bool:
        """Stop if running; True when something was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                _reap(pid)
                time.sleep(0.2)
            if not Path(f"/proc/{pid}").exists():
                break
            _log(f"{self.name} ignored {sig.name}; escalating")
        self.pidfile.unlink(missing_ok=True)
        _log(f"{self.name} stopped")
        return True


def _reap(pid: int) -> None:
    """Collect our own child's exit status so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# --- Kafka -----------------------------------------------------------------

KAFKA_HOME = CACHE / "kafka"
KAFKA_LIBS = KAFKA_HOME / "libs"
KAFKA_DATA = KAFKA_HOME / "data"
KAFKA_POM = HERE / "kafka" / "pom.xml"


def _install_jars(pom: Path, libs: Path, what: str) -> None:
    """Resolve pom's runtime jars from Maven Central into libs, again only when the pom changed."""
    stamp = libs / ".pom.sha256"
    want = _digest(pom)
    if stamp.exists() and stamp.read_text() == want:
        return
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise InfraError(f"{what} needs Java 17+ and Maven on PATH (mvn, java)")
    tmp = libs.with_name(f"{libs.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _run(["mvn", "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
          f"-DoutputDirectory={tmp}"], HERE, f"resolving {what} jars from Maven Central")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    stamp.write_text(want)


def install_kafka() -> None:
    _install_jars(KAFKA_POM, KAFKA_LIBS, "Apache Kafka")


def _kafka_config() -> Path:
    KAFKA_HOME.mkdir(parents=True, exist_ok=True)
    props = KAFKA_HOME / "server.properties"
    props.write_text(f"""\
# Written by deploy/local/infra.py on every start; edit infra.py, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{HOST}:{CONTROLLER_PORT}
listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={KAFKA_DATA}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true
log.retention.hours=24
""")
    (KAFKA_HOME / "log4j.properties").write_text("""\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaRaftServer=INFO
""")
    return props


def prepare_kafka() -> list[str]:
    props = _kafka_config()
    classpath = f"{KAFKA_LIBS}/*"
    java = ["java", f"-Dlog4j.configuration=file:{KAFKA_HOME / 'log4j.properties'}", "-cp", classpath]
    if not (KAFKA_DATA / "meta.properties").exists():
        cluster_id = "-"
        while cluster_id.startswith("-"):  # StorageTool would read "-…" as an option
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Static voters (controller.quorum.voters) need no --standalone.
        _run([*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
             CACHE, "formatting Kafka storage")
    return [*java[:1], "-Xms256m", f"-Xmx{KAFKA_HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", *java[1:], "kafka.Kafka", str(props)]


# --- FerretDB ----------------------------------------------------------------

FERRET_SRC = HERE / "ferretdb"
FERRET_BIN = CACHE / "bin" / "orderstream-ferretdb"
FERRET_DATA = CACHE / "ferretdb" / "data"


# Fixes applied to the vendored FerretDB source before it is built, one per file in
# deploy/local/ferretdb/fixes/: a `file:` line (the path under vendor/), why, then the
# exact old text after `=== old` and its replacement after `=== new`. FerretDB v1 is
# end-of-life upstream, so they are carried here; each old text must be found once.
FERRET_FIXES = sorted((FERRET_SRC / "fixes").glob("*.fix"))


def _ferret_fix(path: Path) -> tuple[str, str, str]:
    head, _, rest = path.read_text().partition("\n=== old\n")
    old, _, new = rest.partition("=== new\n")
    if not (old and new and head.startswith("file: ")):
        raise InfraError(f"{path}: expected 'file: <path>', '=== old' and '=== new'")
    return head.splitlines()[0].removeprefix("file: ").strip(), old, new


def install_ferretdb() -> None:
    stamp = FERRET_BIN.with_suffix(".sha256")
    want = _digest(FERRET_SRC / "go.mod", FERRET_SRC / "go.sum", FERRET_SRC / "main.go")
    want += _digest(*FERRET_FIXES)
    if FERRET_BIN.exists() and stamp.exists() and stamp.read_text() == want:
        return
    if shutil.which("go") is None:
        raise InfraError("FerretDB is built from the Go module proxy: install Go 1.22+ (go on PATH)")
    FERRET_BIN.parent.mkdir(parents=True, exist_ok=True)
    build = CACHE / "ferretdb" / "build"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    for name in ("go.mod", "go.sum", "main.go"):
        shutil.copy(FERRET_SRC / name, build / name)
    env = {**os.environ, "CGO_ENABLED": "0"}
    _run(["go", "mod", "vendor"], build, "vendoring FerretDB v1.24 from the Go module proxy", env)
    for fix in FERRET_FIXES:
        rel, old, new = _ferret_fix(fix)
        path = build / "vendor" / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise InfraError(f"FerretDB fix {fix.name} does not apply: old text not found once in {rel}")
        path.write_text(text.replace(old, new))
    _run(["go", "build", "-mod=vendor", "-trimpath", "-o", str(FERRET_BIN), "."], build,
         "building FerretDB v1.24 (SQLite backend, patched)", env)
    stamp.write_text(want)


def prepare_ferretdb() -> list[str]:
    FERRET_DATA.mkdir(parents=True, exist_ok=True)
    return [str(FERRET_BIN), "-listen-addr", f"{HOST}:{MONGO_PORT}", "-data-dir", str(FERRET_DATA)]


# --- FIX venue: QuickFIX/J's example Executor -----------------------------------

FIXEXEC_HOME = CACHE / "fix-executor"
FIXEXEC_LIBS = FIXEXEC_HOME / "libs"
FIXEXEC_POM = HERE / "fix-executor" / "pom.xml"
# The session settings the container runs with; fixexec_config adapts them to a local folder.
FIXEXEC_SETTINGS = ROOT / "deploy" / "fix-executor" / "executor.cfg"


def install_fixexec() -> None:
    _install_jars(FIXEXEC_POM, FIXEXEC_LIBS, "QuickFIX/J Executor")


def fixexec_config(folder: Path, port: int, market_price: str = "0.50") -> Path:
    """Write folder/executor.cfg: the container's settings, on HOST:port, storing under folder."""
    local = {
        "SocketAcceptAddress": HOST,
        "SocketAcceptPort": str(port),
        "FileStorePath": str(folder / "store"),
        "FileLogPath": str(folder / "log"),
        "DefaultMarketPrice": market_price,
    }
    lines = []
    for line in FIXEXEC_SETTINGS.read_text().splitlines():
        key = line.partition("=")[0]
        lines.append(f"{key}={local.pop(key)}" if key in local else line)
    if local:
        raise InfraError(f"{FIXEXEC_SETTINGS} lacks the setting(s) {sorted(local)}")
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "executor.cfg"
    cfg.write_text(f"# Written by deploy/local/infra.py from {FIXEXEC_SETTINGS.relative_to(ROOT)}; "
                   "edit that, not this file.\n" + "\n".join(lines) + "\n")
    return cfg


def fixexec_command(cfg: Path) -> list[str]:
    """The Executor's command line; it quits when its stdin closes (Server.keep_stdin)."""
    return ["java", "-Xmx256m", "-cp", f"{FIXEXEC_LIBS}/*", "quickfix.examples.executor.Executor", str(cfg)]


def prepare_fixexec() -> list[str]:
    # The config path names the cache folder, which Server.pid() looks for in the command line.
    return fixexec_command(fixexec_config(FIXEXEC_HOME, FIXEXEC_PORT))


SERVERS = {
    "kafka": Server("kafka", KAFKA_PORT, install_kafka, prepare_kafka, "Kafka Server started"),
    "mongo": Server("mongo", MONGO_PORT, install_ferretdb, prepare_ferretdb, "Listening on TCP"),
    "fixexec": Server("fixexec", FIXEXEC_PORT, install_fixexec, prepare_fixexec,
                      "Listening for connections at", keep_stdin=True),
}


def env_lines() -> list[str]:
    return [f"KAFKA_BOOTSTRAP_SERVERS={HOST}:{KAFKA_PORT}", f"MONGO_URL=mongodb://{HOST}:{MONGO_PORT}/"]


def _pick(names: list[str]) -> list[Server]:
    unknown = [n for n in names if n not in SERVERS]
    if unknown:
        raise InfraError(f"unknown server(s) {unknown}; choose from {sorted(SERVERS)}")
    return [SERVERS[n] for n in (names or list(SERVERS))]


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    cmd, names = argv[0], argv[1:]
    try:
        if cmd == "install":
            for s in _pick(names):
                s.install()
        elif cmd == "start":
            started = [s.name for s in _pick(names) if s.start()]
            print(f"started={','.join(started)}")
            print("\n".join(env_lines()))
        elif cmd == "stop":
            for s in reversed(_pick(names)):
                s.stop()
        elif cmd == "status":
            ok = True
            for s in _pick(names):
                up = s.running()
                ok &= up
                state = "running" if up else "stopped"
                print(f"{s.name:7} {state:8} {HOST}:{s.port} pid={s.pid() or '-'} log={s.logfile}")
            return 0 if ok else 3
        elif cmd == "env":
            print("\n".join(env_lines()))
        elif cmd == "clean":
            for s in _pick(names):
                s.stop()
            for d in (KAFKA_DATA, FERRET_DATA.parent, FIXEXEC_HOME / "store", FIXEXEC_HOME / "log", LOGS):
                shutil.rmtree(d, ignore_errors=True)
        else:
            print(f"unknown command {cmd!r}\n{__doc__}", file=sys.stderr)
            return 2
    except InfraError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

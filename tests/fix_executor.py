"""A private FIX venue for tests: QuickFIX/J's example Executor on its own port and folder.

The same jars, session settings and launch as `deploy/local/infra.py` (its fixexec server):
FIX 4.4, the Executor is EXEC and expects ORDERSTREAM, market orders and marketable limit
orders fill in full at `market_price`, sequence numbers and sent messages persist in
`folder/store` across restarts. The jars come from the cache `infra.py install` fills
(ORDERSTREAM_CACHE, default <repo>/.cache); a missing or outdated install is resolved first.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType, TracebackType

ROOT = Path(__file__).resolve().parents[1]
INFRA_PATH = ROOT / "deploy" / "local" / "infra.py"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


def _load_infra() -> ModuleType:
    spec = importlib.util.spec_from_file_location("orderstream_local_infra", INFRA_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


infra = _load_infra()


class Executor:
    """One Executor process; `with Executor(tmp_path, free_port()) as venue:` starts and stops it."""

    def __init__(self, folder: Path, port: int, market_price: str = "0.50") -> None:
        self.folder = folder
        self.port = port
        self.market_price = market_price
        self.logfile = folder / "executor.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until its port accepts connections; raises with its log tail if it exits."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"the Executor on port {self.port} already runs")
        if infra._port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken by another process")
        infra.install_fixexec()
        cfg = infra.fixexec_config(self.folder, self.port, self.market_price)
        self.proc = infra.spawn(infra.fixexec_command(cfg), self.logfile, self.folder, keep_stdin=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not infra._port_open(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Executor exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"the Executor did not listen within {START_TIMEOUT_S:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, like a crash: no logout, the store keeps what it had written."""
        self._end(signal.SIGKILL, 10.0)

    def stop(self) -> None:
        """SIGTERM (QuickFIX/J logs the sessions out), SIGKILL after a grace period."""
        self._end(signal.SIGTERM, STOP_GRACE_S)

    def _end(self, sig: signal.Signals, wait_s: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10.0)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Executor:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

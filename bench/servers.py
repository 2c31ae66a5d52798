"""Kafka and MongoDB for benchmarks: the environment's, else the local servers, stopped afterwards."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

INFRA = Path(__file__).resolve().parents[1] / "deploy" / "local" / "infra.py"


def servers(*names: str) -> dict[str, str]:
    """KAFKA_BOOTSTRAP_SERVERS and MONGO_URL; local servers this call starts stop when the process ends."""
    env = {k: os.environ[k] for k in ("KAFKA_BOOTSTRAP_SERVERS", "MONGO_URL") if k in os.environ}
    if len(env) == 2:
        return env
    out = subprocess.run([sys.executable, str(INFRA), "start", *names], capture_output=True, text=True,
                         check=True)
    found = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    started = [s for s in found.pop("started", "").split(",") if s]
    if started:
        atexit.register(subprocess.run, [sys.executable, str(INFRA), "stop", *started], check=False)
    return {**found, **env}

"""The whole platform started the way `make up` starts it (`orderstream up`), for the end-to-end tests:
the module-scoped `platform` fixture of tests/e2e/conftest.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orderstream.ops.platform import SETTINGS
from tests.conftest import Infra
from tests.fix_executor import Executor
from tests.kafka_tools import ROOT, free_port, unique_prefix


def orderstream(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orderstream.common.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def platform_up(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("platform")
    database = f"up{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap,
        "MONGO_URL": infra.mongo_url,
        "ORDERSTREAM_TOPIC_PREFIX": unique_prefix(),
        "ORDERSTREAM_PARTITIONS": "2",
        "ORDERSTREAM_RUN_DIR": str(tmp / "run"),
    }
    for service in SETTINGS:
        up = service.upper()
        env[f"ORDERSTREAM_{up}_WEB_PORT"] = str(free_port())
        env[f"ORDERSTREAM_{up}_DATA_DIR"] = str(tmp / "data")
    env["ORDERSTREAM_GATEWAY_MONGO_DATABASE"] = env["ORDERSTREAM_COLLECTOR_MONGO_DATABASE"] = database
    env["ORDERSTREAM_COLLATERAL_SESSION_TIMEOUT_S"] = "6"
    venue = Executor(tmp / "executor", free_port())  # the FIX venue of ADA-USD, fresh like the router
    venue.start()
    env["ORDERSTREAM_ROUTER_FIX_VENUES"] = json.dumps({"FIX-EXEC": {"port": venue.port}})
    env["ORDERSTREAM_GATEWAY_FIX_PORT"] = str(free_port())
    started = orderstream(env, "up")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        creds = json.loads((tmp / "run" / "credentials.json").read_text())
        yield {
            "env": env,
            "up": started.stdout,
            "base": f"http://127.0.0.1:{env['ORDERSTREAM_GATEWAY_WEB_PORT']}",
            "creds": creds,
            "run": tmp / "run",
            "fix_port": int(env["ORDERSTREAM_GATEWAY_FIX_PORT"]),
        }
    finally:
        stopped = orderstream(env, "down")
        venue.stop()
        print(stopped.stdout, stopped.stderr)
        for log in sorted((tmp / "run" / "logs").glob("*.log")):
            text = log.read_text(errors="replace")
            if "Traceback" in text:
                print(f"--- {log.name}\n{text[-3000:]}")

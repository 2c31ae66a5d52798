"""The web pages the gateway serves, and the REST endpoints they need beyond the trading API.

- `/` is the trading screen and `/ops` the operator dashboard (`static/`): plain files that use
  the public API only, signing every request in the browser.
- `GET /api/v1/instruments` (read): the instrument set, for the symbol picker and the ticket.
- Operator views (admin), what `orderstream status | lag | dlq-replay` show, by the same functions
  (`ops/platform.py`, `ops/tools.py`): `GET /api/v1/admin/services` (each service's /healthz, pid,
  partitions, and the local supervisor's restarts), `GET /api/v1/admin/lag`,
  `GET /api/v1/admin/dead-letters` and `POST /api/v1/admin/dead-letters/replay`.
  Each gathering is shared by the requests that come while it runs and for two seconds after, so
  dashboards polling together cost Kafka one query (a gathering takes 0.1 to 2 s: clients and
  metadata of a broker with many topics).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiokafka.errors import KafkaError

from orderstream.gateway import api
from orderstream.gateway.app import Gateway
from orderstream.gateway.auth import Principal
from orderstream.gateway.core import answers, parse
from orderstream.gateway.rest import rest
from orderstream.ops import platform, tools

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
Operation = Callable[[Principal, dict[str, Any]], Awaitable[dict[str, Any]]]
TRIES = 3  # a broker's metadata or group coordinator may not answer at once (a busy or starting broker)
FRESH_S = 2.0  # an operator view gathered this recently is answered again as it is


class Recent:
    """The latest result of an expensive gathering, reused for FRESH_S; callers at once share one."""

    def __init__(self, gather: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> None:
        self.gather = gather
        self.task: asyncio.Task[dict[str, Any]] | None = None
        self.at = 0.0

    async def get(self) -> dict[str, Any]:
        task = self.task
        stale = task is None or (task.done() and (task.exception() is not None
                                                  or time.monotonic() - self.at > FRESH_S))
        if stale:
            self.task = task = asyncio.get_running_loop().create_task(self._gather())
        assert task is not None
        return await asyncio.shield(task)

    async def _gather(self) -> dict[str, Any]:
        try:
            for attempt in range(1, TRIES + 1):
                try:
                    return await self.gather()
                except (KafkaError, ConnectionError, TimeoutError) as exc:
                    if attempt == TRIES:  # answered 50002: try again
                        raise
                    log.warning("an operator view failed; trying again", extra={"error": repr(exc)})
                    await asyncio.sleep(0.5 * attempt)
            raise AssertionError("unreachable")
        finally:  # fresh from when it was gathered: one that took longer than FRESH_S is still reused
            self.at = time.monotonic()

    def forget(self) -> None:
        self.task = None


class Console:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.bootstrap = gw.settings.kafka_bootstrap_servers
        self.prefix = gw.settings.topic_prefix
        self.health = Recent(self._services)
        self.lags = Recent(lambda: tools.lag(self.bootstrap, self.prefix))
        self.clients = tools.Clients(self.bootstrap)  # kept: a gathering then takes milliseconds
        self.dead = Recent(self._dead_letters)
        self.replaying = asyncio.Lock()

    async def _dead_letters(self) -> dict[str, Any]:
        try:
            return await tools.dead_letters(self.bootstrap, self.prefix, self.replay_group, self.clients)
        except (KafkaError, ConnectionError, TimeoutError):
            await self.clients.stop()  # the next try starts fresh ones
            raise

    @property
    def replay_group(self) -> str:
        return self.prefix + tools.REPLAY_GROUP  # the CLI's `dlq-replay` group: both know what was sent

    @answers("instruments.list")
    async def instruments(self, who: Principal, _: dict[str, Any]) -> dict[str, Any]:
        who.require("read")
        await self.gw.instruments_ready()
        listed = sorted(self.gw.instruments.latest.values(), key=lambda i: i.symbol)
        return {"instruments": [i.model_dump(mode="json") for i in listed]}

    @answers("admin.services")
    async def services(self, who: Principal, _: dict[str, Any]) -> dict[str, Any]:
        who.require("admin")
        return await self.health.get()

    async def _services(self) -> dict[str, Any]:
        env = dict(os.environ)
        ports = {s: platform.web_port(s, env) for s in platform.SETTINGS}
        ports["gateway"] = self.gw.settings.web_port
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            bodies = await platform.health(http, ports)
        children = platform.supervised(platform.run_dir())
        return {
            "services": {
                s: {
                    "status": body.get("status", "down"),
                    "port": ports[s],
                    "pid": body.get("pid", children.get(s, {}).get("pid")),
                    "restarts": children.get(s, {}).get("restarts"),
                    "assigned_partitions": body.get("assigned_partitions"),
                    "health": body,
                }
                for s, body in bodies.items()
            }
        }

    @answers("admin.lag")
    async def lag(self, who: Principal, _: dict[str, Any]) -> dict[str, Any]:
        who.require("admin")
        return {"lag": await self.lags.get()}

    @answers("admin.dead_letters")
    async def dead_letters(self, who: Principal, _: dict[str, Any]) -> dict[str, Any]:
        who.require("admin")
        return {"topics": await self.dead.get()}

    @answers("admin.replay")
    async def replay(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("admin")
        topic = parse(api.ReplayDeadLetters, params).topic
        async with self.replaying:  # one replayer in the group at a time: no rebalance between them
            counts = (await self.dead.get()).get(topic, {})  # at most FRESH_S old: what the operator saw
            sent: list[str] = []
            if counts.get("not_replayed"):  # joining the group takes seconds: only when there is work
                sent = await tools.dlq_replay(self.bootstrap, self.prefix + topic, to=None, dry_run=False,
                                              group=self.replay_group)
            self.dead.forget()
        return {"topic": topic, "replayed": sent}


def page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def serve(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return serve


def register(app: web.Application, gw: Gateway) -> None:
    """The pages (`/`, `/ops`, `/static/`) and the endpoints behind them."""
    console = Console(gw)

    async def stop(_: web.Application) -> None:
        await console.clients.stop()

    app.on_cleanup.append(stop)
    app.router.add_get("/", page("index.html"))
    app.router.add_get("/ops", page("ops.html"))
    app.router.add_static("/static/", STATIC)
    for method, path, op, name in (
        ("GET", "/api/v1/instruments", console.instruments, "instruments.list"),
        ("GET", "/api/v1/admin/services", console.services, "admin.services"),
        ("GET", "/api/v1/admin/lag", console.lag, "admin.lag"),
        ("GET", "/api/v1/admin/dead-letters", console.dead_letters, "admin.dead_letters"),
        ("POST", "/api/v1/admin/dead-letters/replay", console.replay, "admin.replay"),
    ):
        handler = rest(_of_gateway(op), name, body=method == "POST", with_request_id=False)
        app.router.add_route(method, path, handler)


def _of_gateway(op: Operation) -> Callable[[Gateway, Principal, dict[str, Any]], Awaitable[dict[str, Any]]]:
    """A console operation called the way `rest` calls the gateway's own: (gateway, caller, params)."""

    async def call(_: Gateway, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        return await op(who, params)

    return call

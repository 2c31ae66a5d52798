"""The gateway's aiohttp application."""

from __future__ import annotations

import logging.config
import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orderstream.common.logs import logging_config
from orderstream.gateway.settings import GatewaySettings

SETTINGS = web.AppKey("settings", GatewaySettings)
STARTED = web.AppKey("started", float)


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    return web.json_response({"service": "gateway", "status": "ok",
                              "uptime_s": round(time.time() - app[STARTED], 1)})


async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build(settings: GatewaySettings | None = None) -> web.Application:
    """The gateway application, ready to run."""
    app = web.Application()
    app[SETTINGS] = settings or GatewaySettings()
    app[STARTED] = time.time()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def main() -> None:
    settings = GatewaySettings()
    logging.config.dictConfig(logging_config("gateway", settings.log_level, settings.worker_id))
    web.run_app(build(settings), host=settings.web_host, port=settings.web_port, access_log=None)

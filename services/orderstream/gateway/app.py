"""The gateway's wiring: the `Gateway` composed of its rooms, the routes of each protocol, and the
service's own /healthz and /metrics.

The rooms: order entry (orders.py), reads (reads.py), the user and market streams (streams.py) and
admin (admin.py), on the state they share (core.py). The protocols that frame them: REST under
/api/v1 (rest.py), the JSON-RPC WebSocket /ws (jsonrpc.py), the OrderGateway document API
(docapi.py), the Binance-compatible API (binance*.py), FIX order entry (fixentry.py) and the web
pages (console.py).
"""

from __future__ import annotations

import asyncio
import logging.config

from aiohttp import web
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orderstream.common.heap import settle
from orderstream.common.logs import logging_config
from orderstream.gateway import api
from orderstream.gateway.admin import Admin
from orderstream.gateway.core import GATEWAY
from orderstream.gateway.fixentry import FixEntry
from orderstream.gateway.jsonrpc import answer, websocket_endpoint
from orderstream.gateway.orders import OrderEntry
from orderstream.gateway.reads import Reads
from orderstream.gateway.rest import access_log, json_errors, rest
from orderstream.gateway.settings import GatewaySettings
from orderstream.gateway.streams import Connection, Streams

ORDER_PATH = "/api/v1/orders/{order_id:[^/]+(?:/[0-9]+)?}"  # a basket's or list's child: <parent id>/<n>


class Gateway(OrderEntry, Reads, Streams, Admin):
    """The gateway: its rooms composed, and their tasks started and stopped with the application."""

    def __init__(self, settings: GatewaySettings) -> None:
        super().__init__(settings)
        self.fix = FixEntry(self)
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self, _: web.Application) -> None:
        await self.orders.create_index([("order_id", 1)], unique=True)
        await self.order_db["gateway_signatures"].create_index([("expires", 1)])
        await self.move_order_index()
        if self.settings.admin_key_id and self.settings.admin_secret:
            await self.keys.put_key(
                self.settings.admin_key_id, self.settings.admin_secret, "admin", ["admin", "read", "trade"]
            )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            acks="all",
            linger_ms=self.settings.producer_linger_ms,
        )
        await self.producer.start()
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self.instruments.follow()),
            loop.create_task(self.depth.follow()),
            loop.create_task(self._reports()),
            loop.create_task(self._market_data()),
            loop.create_task(self.submitter.run()),
            loop.create_task(self._forget_signatures()),
        ]
        await self.fix.start()

    async def stop(self, _: web.Application) -> None:
        await self.fix.stop()
        for task in self.tasks:
            task.cancel()
        if self.producer is not None:
            await self.producer.stop()


def ready(gw: Gateway) -> bool:
    return gw.instruments.ready.is_set() and gw.reports_ready.is_set()


async def healthz(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    return web.json_response(
        {
            "service": "gateway",
            "status": "ok" if ready(gw) else "starting",
            "connections": sum(len(c) for c in gw.connections.values()),
            "instruments": len(gw.instruments.latest),
            "orders_in_flight": gw.outstanding.count,
            "orders_in_flight_bound": gw.outstanding.bound,
            "orders_refused_busy": gw.outstanding.refused,
            "orders_in_flight_expired": gw.outstanding.expired,
            "fix_sessions": gw.fix.health(),
        },
        status=200 if ready(gw) else 503,
    )


async def metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(_: web.Request) -> web.Response:
    return web.json_response(api.openapi())


def build(settings: GatewaySettings | None = None) -> web.Application:
    """The gateway application, ready to run."""
    gw = Gateway(settings or GatewaySettings())
    app = web.Application(client_max_size=gw.settings.max_frame_bytes, middlewares=[access_log, json_errors])
    app[GATEWAY] = gw
    app.on_startup.append(gw.start)
    app.on_cleanup.append(gw.stop)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_post("/api/v1/orders", rest(OrderEntry.place, "order.place", body=True))
    app.router.add_post("/api/v1/baskets", rest(OrderEntry.place_basket, "order.basket", body=True))
    app.router.add_post("/api/v1/oco", rest(OrderEntry.place_oco, "order.oco", body=True))
    app.router.add_post("/api/v1/brackets", rest(OrderEntry.place_bracket, "order.bracket", body=True))
    app.router.add_post("/api/v1/algo-orders", rest(OrderEntry.place_algo, "order.algo", body=True))
    app.router.add_post("/api/v1/quotes", rest(OrderEntry.quote, "quote.request", body=True))
    app.router.add_post("/api/v1/index-orders", rest(OrderEntry.place_index, "order.index", body=True))
    app.router.add_patch(
        "/api/v1/index-orders/{order_id}",
        rest(OrderEntry.update_index, "order.index.update", body=True, path_param="order_id"),
    )
    app.router.add_get(
        ORDER_PATH,
        rest(Reads.get, "order.get", body=False, path_param="order_id", with_request_id=False),
    )
    app.router.add_delete(
        ORDER_PATH, rest(OrderEntry.cancel, "order.cancel", body=False, path_param="order_id")
    )
    app.router.add_patch(
        ORDER_PATH, rest(OrderEntry.replace, "order.replace", body=True, path_param="order_id")
    )
    app.router.add_post(
        "/api/v1/admin/accounts",
        rest(Admin.create_account, "admin.account", body=True, with_request_id=False),
    )
    app.router.add_post("/api/v1/admin/deposits", rest(Admin.deposit, "admin.deposit", body=True))
    app.router.add_post(
        "/api/v1/admin/kill-switch", rest(Admin.kill_switch, "admin.kill_switch", body=True)
    )
    app.router.add_post("/api/v1/admin/withdrawals", rest(Admin.withdraw, "admin.withdraw", body=True))
    for path, op, name in (
        ("/api/v1/orders", Reads.open_orders, "orders.open"),
        ("/api/v1/history", Reads.history, "orders.history"),
        ("/api/v1/balances", Reads.balances, "balances.get"),
    ):
        app.router.add_get(path, rest(op, name, body=False, query=True, with_request_id=False))
    app.router.add_get("/ws", websocket_endpoint(answer, Connection))
    app.router.add_get("/fix", gw.fix.websocket)
    from orderstream.gateway import docapi  # the OrderGateway protocol builds on this module

    docapi.register(app, gw)
    from orderstream.gateway import binance  # the Binance-compatible API, likewise

    binance.register(app, gw)
    from orderstream.gateway import console  # the web pages and the operator views

    console.register(app, gw)
    from orderstream.gateway import apidocs  # Swagger UI of the OpenAPI document at /api/v1/docs

    apidocs.register(app, gw)
    return app


async def _settle(_: web.Application) -> None:
    settle()  # after the rooms have started: what they built stays out of collections (common/heap.py)


def main() -> None:
    settings = GatewaySettings()
    logging.config.dictConfig(logging_config("gateway", settings.log_level, settings.worker_id))
    app = build(settings)
    app.on_startup.append(_settle)
    web.run_app(app, host=settings.web_host, port=settings.web_port, access_log=None)

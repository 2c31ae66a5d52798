"""Backpressure at the gateway (gateway/inflight.py): a real gateway process whose order path never
answers by itself (no services run here; the test plays the first report), with room for 3 orders."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from orderstream.client import GatewayClient as Client
from tests.conftest import Infra
from tests.e2e.stack import CODEC
from tests.integration.gateway_process import running_gateway
from tests.kafka_tools import eventually, produce
from tests.reports import report

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(infra: Infra, tmp_path: Any) -> AsyncIterator[dict[str, Any]]:
    async with running_gateway(infra, tmp_path, ORDERSTREAM_GATEWAY_MAX_ORDERS_IN_FLIGHT="3",
                               ORDERSTREAM_GATEWAY_IN_FLIGHT_EXPIRE_S="4") as gw:
        yield gw


def order(cid: str) -> dict[str, Any]:
    return {"client_order_id": cid, "symbol": "BTC-USD", "side": "BUY", "quantity": "0.01", "price": "30000"}


async def health(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(base + "/healthz") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_orders_beyond_the_bound_are_refused_busy_until_the_path_answers(
    gateway: dict[str, Any],
) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http:
        placed = [await a.call(http, "POST", "/api/v1/orders", order(f"bp{i}")) for i in range(3)]
        assert [status for status, _, _ in placed] == [200, 200, 200]
        status, headers, body = await a.call(http, "POST", "/api/v1/orders", order("bp3"))
        assert (status, body["error"]["code"], headers["Retry-After"]) == (503, 50302, "1"), body
        async with http.ws_connect(gateway["base"] + "/ws") as ws:  # the same on the WebSocket
            await a.login(ws)
            await ws.send_json({"id": "o", "method": "order.place", "params": order("bp4")})
            assert (await ws.receive_json(timeout=10))["error"]["code"] == 50302
            await ws.send_json({"id": "b", "method": "balances.get"})
            assert "result" in await ws.receive_json(timeout=10)  # still open
        assert (await health(http, gateway["base"]))["orders_refused_busy"] == 2

        # the first report of one order comes back: room for one more
        first = placed[0][2]["order_id"]
        rep = report(1, 1, account="A").model_copy(update={"order_id": first, "event_id": f"{first}:1"})
        await produce(gateway["bootstrap"], gateway["prefix"] + "execution.reports",
                      [(b"A", CODEC.encode(rep), {})])

        async def counted() -> bool:
            return bool((await health(http, gateway["base"]))["orders_in_flight"] == 2)

        await eventually("the report counted", counted, timeout=30)
        assert (await a.call(http, "POST", "/api/v1/orders", order("bp5")))[0] == 200
        assert (await a.call(http, "POST", "/api/v1/orders", order("bp6")))[0] == 503

        # orders whose report never comes stop counting after IN_FLIGHT_EXPIRE_S
        await asyncio.sleep(4.2)
        assert (await a.call(http, "POST", "/api/v1/orders", order("bp7")))[0] == 200
        got = await health(http, gateway["base"])
        assert (got["orders_in_flight"], got["orders_in_flight_expired"]) == (1, 3), json.dumps(got)

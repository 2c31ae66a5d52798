"""Odd input and failing back ends: every answer is a documented error code, never a 500 or a dropped
WebSocket. A real gateway process, real aiohttp clients, the real broker and MongoDB-wire server; the
faults are real ones (a topic that refuses the gateway's records, a MongoDB connection cut)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from motor.motor_asyncio import AsyncIOMotorClient

from orderstream.client import GatewayClient as Client
from orderstream.common.topics import spec, topic_configs
from tests.conftest import Infra
from tests.integration.gateway_process import running_gateway
from tests.kafka_tools import free_port

pytestmark = pytest.mark.integration

DEEP = 30_000  # levels of nesting the tester sent over the WebSocket


@pytest.fixture(scope="module")
async def gateway(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with running_gateway(infra, tmp_path_factory.mktemp("gateway-errors")) as gw:
        yield gw


def order(cid: str) -> dict[str, Any]:
    return {"client_order_id": cid, "symbol": "BTC-USD", "side": "BUY", "quantity": "0.01", "price": "30000"}


async def metric(http: aiohttp.ClientSession, base: str, method: str, code: int) -> float:
    """The /metrics count of answers with `code` to `method` (a REST route or a WebSocket method)."""
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    wanted = f'orderstream_gateway_requests_total{{code="{code}",method="{method}"}} '
    lines = [line for line in text.splitlines() if line.startswith(wanted)]
    return float(lines[0].split()[-1]) if lines else 0.0


async def alive(ws: aiohttp.ClientWebSocketResponse) -> None:
    """The connection still answers a request."""
    await ws.send_json({"id": "alive", "method": "orders.open", "params": {}})
    answer = await ws.receive_json(timeout=10)
    assert answer["id"] == "alive" and "orders" in answer["result"], answer


async def ws_answer(gateway: dict[str, Any], account: str, text: str) -> dict[str, Any]:
    """The answer to one frame on a logged-in WebSocket, which then still answers another request."""
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway["base"] + "/ws") as ws:
        await gateway[account].login(ws)
        await ws.send_str(text)
        answer: dict[str, Any] = await ws.receive_json(timeout=10)
        await alive(ws)
    return answer


@pytest.mark.parametrize("before", ["abc", "", "\u0661\u0662:x", "é", "1:", "99999999999999999999:x"])
async def test_a_bad_history_cursor_on_rest_is_a_validation_error(
    gateway: dict[str, Any], before: str
) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http:
        status, _, answer = await a.call(http, "GET", f"/api/v1/history?before={before}")
    assert (status, answer["error"]["code"], answer["error"]["details"]["field"]) == (400, 40001, "before")
    assert "cursor" in answer["error"]["message"]


async def test_a_bad_history_cursor_on_the_websocket_answers_an_error_and_keeps_the_connection(
    gateway: dict[str, Any],
) -> None:
    frame = {"id": "h", "method": "orders.history", "params": {"before": "abc"}}
    answer = await ws_answer(gateway, "A", json.dumps(frame))
    error = answer["error"]
    assert (answer["id"], error["code"], error["details"]["field"]) == ("h", 40001, "before")


async def test_a_rest_body_nested_too_deep_is_refused_with_its_own_code(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http:
        for depth in (5_000, 40):  # past Python's recursion limit, and past the gateway's bound only
            body = ("[" * depth + "]" * depth).encode()
            status, _, answer = await a.call(http, "POST", "/api/v1/orders", raw=body)
            assert (status, answer["error"]["code"]) == (400, 40004), depth
            assert "nested deeper than 32" in answer["error"]["message"]
        status, _, _ = await a.call(http, "POST", "/api/v1/orders", order("deep-ok"))
        assert status == 200


async def test_a_websocket_frame_nested_too_deep_is_refused_and_the_connection_stays(
    gateway: dict[str, Any],
) -> None:
    text = '{"id": 1, "method": "orders.open", "params": ' + "[" * DEEP + "]" * DEEP + "}"
    answer = await ws_answer(gateway, "A", text)
    assert answer["error"]["code"] == 40004 and "nested" in answer["error"]["message"]


async def test_a_non_ascii_signature_header_is_unauthorized(gateway: dict[str, Any]) -> None:
    """UTF-8 that is not ASCII (hmac.compare_digest raised TypeError: a 500)."""
    a: Client = gateway["A"]
    body = json.dumps(order("na1")).encode()
    async with aiohttp.ClientSession() as http:
        headers = {**a.headers("POST", "/api/v1/orders", body), "X-OS-SIGNATURE": "é" * 64}
        async with http.post(gateway["base"] + "/api/v1/orders", data=body, headers=headers) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (401, 40102)


@pytest.mark.parametrize(
    "header, value, code",
    [
        (b"X-OS-KEY", b"\xe9t\xe9", 40101),
        (b"X-OS-SIGNATURE", b"\xe9", 40102),
    ],
)
async def test_a_credential_header_of_bytes_that_are_no_utf8_is_unauthorized(
    gateway: dict[str, Any], header: bytes, value: bytes, code: int
) -> None:
    """Raw header bytes (aiohttp decodes them with surrogates, which MongoDB and hmac refused: a 500)."""
    a: Client = gateway["A"]
    headers = {k.encode(): v.encode() for k, v in a.headers("GET", "/api/v1/balances", b"").items()}
    headers[header] = value
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers.items())
    port = int(gateway["base"].rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/v1/balances HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n" + head + b"\r\n")
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    assert status_line.split()[1] == b"401", response
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["error"]["code"] == code


async def test_a_non_ascii_request_id_is_replaced_not_echoed(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    body = json.dumps(order("rid-utf8")).encode()
    async with aiohttp.ClientSession() as http:
        headers = {**a.headers("POST", "/api/v1/orders", body), "X-Request-Id": "запрос"}
        async with http.post(gateway["base"] + "/api/v1/orders", data=body, headers=headers) as resp:
            assert resp.status == 200
            assert resp.headers["X-Request-Id"].isascii() and len(resp.headers["X-Request-Id"]) == 32


@pytest.mark.parametrize("key", [["k"], {"$gt": ""}])
async def test_a_websocket_login_key_that_is_no_string_is_refused_and_the_connection_stays(
    gateway: dict[str, Any], key: Any
) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway["base"] + "/ws") as ws:
        params = {**a.login_frame()["params"], "key": key}
        await ws.send_json({"id": "l", "method": "auth.login", "params": params})
        answer = await ws.receive_json(timeout=10)
        assert answer["error"]["code"] in (40100, 40101), answer
        await a.login(ws)
        await alive(ws)


@asynccontextmanager
async def records_refused(gateway: dict[str, Any], name: str) -> AsyncIterator[None]:
    """The broker refuses every record of the gateway's topic `name` (max.message.bytes below any batch)
    until the block ends."""
    topic = gateway["prefix"] + name
    admin = AIOKafkaAdminClient(bootstrap_servers=gateway["bootstrap"])
    await admin.start()
    configs = topic_configs(spec(name))
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={**configs, "max.message.bytes": "16"})]
        )
        yield
    finally:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
        await admin.close()


async def test_an_order_the_broker_refuses_answers_50001_on_rest_and_a_retry_places_it_once(
    gateway: dict[str, Any],
) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http:
        before = await metric(http, gateway["base"], "/api/v1/orders", 50001)
        async with records_refused(gateway, "order.commands"):
            await asyncio.sleep(1)  # the broker applies the topic's new config
            status, headers, answer = await a.call(http, "POST", "/api/v1/orders", order("refused1"))
            assert (status, answer["error"]["code"]) == (503, 50001), answer
            assert "client_order_id" in answer["error"]["message"]
            assert answer["error"]["details"]["request_id"] == headers["X-Request-Id"]
        assert await metric(http, gateway["base"], "/api/v1/orders", 50001) == before + 1
        log = gateway["log"].read_text().splitlines()
        logged = [json.loads(line) for line in log if line.startswith("{")]
        assert any(
            e.get("request_id") == headers["X-Request-Id"] and e.get("code") == 50001 for e in logged
        ), "the failure is logged with its request id"
        for _ in range(20):  # the broker applies the restored config
            status, _, again = await a.call(http, "POST", "/api/v1/orders", order("refused1"))
            if status == 200:
                break
            await asyncio.sleep(0.5)
        assert status == 200 and again["client_order_id"] == "refused1"


async def test_an_order_the_broker_refuses_answers_50001_on_the_websocket_too(
    gateway: dict[str, Any],
) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway["base"] + "/ws") as ws:
        await a.login(ws)
        async with records_refused(gateway, "order.commands"):
            await asyncio.sleep(1)
            await ws.send_json({"id": "o", "method": "order.place", "params": order("refused-ws")})
            answer = await ws.receive_json(timeout=30)
            assert (answer["id"], answer["error"]["code"]) == ("o", 50001), answer
            await ws.send_json({"id": "c", "method": "order.cancel", "params": {"order_id": "BTC-USD-x"}})
            assert (await ws.receive_json(timeout=30))["error"]["code"] == 40401
        await alive(ws)
        assert await metric(http, gateway["base"], "order.place", 50001) >= 1


async def test_an_answer_failing_its_model_check_is_50000_and_the_connection_stays(
    gateway: dict[str, Any], infra: Infra
) -> None:
    """A read-model document the answer model refuses (a balance that is a number, not a decimal string)."""
    db: Any = AsyncIOMotorClient(infra.mongo_url)[gateway["database"]]
    await db["balances"].insert_one(
        {"_id": "B|USD", "account_id": "B", "asset": "USD", "free": 5, "held": 0, "sequence": 1,
         "ts_ns": time.time_ns()}
    )
    b: Client = gateway["B"]
    async with aiohttp.ClientSession() as http:
        status, headers, answer = await b.call(http, "GET", "/api/v1/balances")
        assert (status, answer["error"]["code"]) == (500, 50000), answer
        assert answer["error"]["details"]["request_id"] == headers["X-Request-Id"]
        answer = await ws_answer(gateway, "B", json.dumps({"id": "b", "method": "balances.get"}))
        assert (answer["id"], answer["error"]["code"]) == ("b", 50000), answer
        assert await metric(http, gateway["base"], "balances.get", 50000) == 1
        assert await metric(http, gateway["base"], "/api/v1/balances", 50000) == 1


class Cuttable:
    """A TCP forwarder to MongoDB that a test can cut (every connection closed, new ones refused)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 27017
        self.listen_port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.listen_port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.difference_update((writer, up_writer))


async def test_a_websocket_read_whose_mongodb_is_cut_answers_50002_and_the_connection_stays(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proxy = Cuttable(infra.mongo_url)
    await proxy.open()
    url = f"mongodb://127.0.0.1:{proxy.listen_port}/?serverSelectionTimeoutMS=1500"
    async with (
        running_gateway(infra, tmp_path_factory.mktemp("gateway-cut"), accounts=("A",), MONGO_URL=url) as gw,
        aiohttp.ClientSession() as http,
        http.ws_connect(gw["base"] + "/ws") as ws,
    ):
        await gw["A"].login(ws)
        await ws.send_json({"id": "h0", "method": "orders.history", "params": {}})
        assert (await ws.receive_json(timeout=10))["result"]["orders"] == []
        await proxy.cut()
        await ws.send_json({"id": "h1", "method": "orders.history", "params": {}})
        answer = await ws.receive_json(timeout=30)
        assert (answer["id"], answer["error"]["code"]) == ("h1", 50002), answer
        await proxy.open()
        await ws.send_json({"id": "h2", "method": "orders.history", "params": {}})
        assert (await ws.receive_json(timeout=30))["result"]["orders"] == []  # the same connection
        assert await metric(http, gw["base"], "orders.history", 50002) == 1

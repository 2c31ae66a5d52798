"""The gateway against its own OpenAPI document: schemathesis generates requests for every operation
(data that fits the schema and data that does not), signs each, and sends it to a real gateway with its
rate limits lifted. No answer may be a 5xx, a status the document does not list for the operation, or
a body off its documented schema. The same generated parameters go over one WebSocket as frames of
that method: each gets a result or a 4xxxx error, and the connection stays open throughout."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jsonschema
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orderstream.client import GatewayClient as Client
from orderstream.client import sign
from orderstream.gateway import api
from tests.conftest import Infra
from tests.integration.gateway_process import running_gateway

pytestmark = pytest.mark.integration

EXAMPLES = 400  # per operation: 23 operations, about 9,000 requests and 4,800 frames in about 3 minutes
WS_METHODS = {"order.place", "order.basket", "order.algo", "order.cancel", "order.replace", "order.get",
              "orders.open", "orders.history", "balances.get", "quote.request", "order.index",
              "order.index.update"}  # the REST operations the WebSocket has too
SEEN: dict[str, Counter[int]] = {}  # operation -> statuses answered, to show the run reached the handlers


@pytest.fixture(scope="module")
async def unlimited(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """A gateway whose rate limits never refuse, so the generated orders reach the broker."""
    async with running_gateway(
        infra,
        tmp_path_factory.mktemp("gateway-openapi"),
        accounts=(),
        ORDERSTREAM_GATEWAY_ORDERS_PER_S="1000000",
        ORDERSTREAM_GATEWAY_ORDERS_BURST="1000000",
    ) as gw:
        yield gw


class Signed(requests.auth.AuthBase):
    """Signs a request as sent: its method, path and query (percent-encoded) and body bytes."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body.encode() if isinstance(r.body, str) else (r.body or b"")
        stamp = str(int(time.time() * 1000))
        assert r.method is not None
        r.headers.update(
            {
                "X-OS-KEY": self.client.key,
                "X-OS-TIMESTAMP": stamp,
                "X-OS-SIGNATURE": sign(self.client.secret, stamp, r.method, r.path_url, body),
            }
        )
        return r


class Frames:
    """One logged-in WebSocket, driven from the synchronous schemathesis test by a loop of its own."""

    def __init__(self, client: Client) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        assert self._run(self._open(client))["result"]["account_id"] == "admin"

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def _open(self, client: Client) -> dict[str, Any]:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(client.base + "/ws", max_msg_size=0)
        return await client.login(self.ws)

    async def _ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        assert self.ws is not None
        await self.ws.send_str(json.dumps(frame))
        answer: dict[str, Any] = await self.ws.receive_json(timeout=30)
        return answer

    def ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self._run(self._ask(frame))
        return answer

    def close(self) -> None:
        async def close() -> None:
            assert self.ws is not None and self.http is not None
            await self.ws.close()
            await self.http.close()

        self._run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def frames(unlimited: dict[str, Any]) -> Iterator[Frames]:
    ws = Frames(unlimited["admin"])
    yield ws
    ws.close()


# The document the gateway serves (test_gateway checks it is served as api.openapi() makes it)
schema = schemathesis.openapi.from_dict(api.openapi())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """Half the bodies that name a symbol (an order, a basket leg) name the listed one, BTC-USD, so that
    orders pass validation and reach the broker and the answer model too."""
    if not isinstance(body, dict):
        return st.just(body)
    listed = {**body}
    if "symbol" in listed:
        listed["symbol"] = "BTC-USD"
    if isinstance(listed.get("legs"), list):
        listed["legs"] = [{**leg, "symbol": "BTC-USD"} if isinstance(leg, dict) else leg
                          for leg in listed["legs"][:1]]
    return st.sampled_from([body, listed])


def ws_params(case: Any) -> Any:
    """The WebSocket params of a generated REST request: its body, query or path parameter."""
    path = dict(case.path_parameters or {})
    if case.operation.definition.raw.get("requestBody") is not None:
        body = case.body if not isinstance(case.body, NotSet) else None
        if isinstance(body, bytes):  # a body that is no JSON value: its text
            body = body.decode(errors="replace")
        return {**body, **path} if isinstance(body, dict) else body
    return {**dict(case.query or {}), **path}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_answers_a_documented_status_never_a_server_error(
    case: Any, unlimited: dict[str, Any], frames: Frames
) -> None:
    op = case.operation.definition.raw["operationId"]
    response = case.call(base_url=unlimited["base"], auth=Signed(unlimited["admin"]), timeout=30)
    SEEN.setdefault(op, Counter())[response.status_code] += 1
    assert response.status_code < 500, response.text
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance],
    )
    if op in WS_METHODS:
        answer = frames.ask({"id": op, "method": op, "params": ws_params(case)})
        assert answer["id"] == op, answer
        assert "result" in answer or 40000 <= answer["error"]["code"] < 50000, answer


def test_the_generated_requests_reached_every_operation_signed() -> None:
    """Not vacuous: each operation got its examples, signed requests passed, and every operation that
    needs no existing order was answered 200 at least once (orders placed on the broker too)."""
    print({op: dict(statuses) for op, statuses in SEEN.items()})
    assert set(SEEN) == {
        "orders.open", "order.place", "order.get", "order.replace", "order.cancel", "orders.history",
        "balances.get", "order.basket", "order.oco", "order.bracket", "order.algo", "admin.kill_switch",
        "admin.account", "admin.deposit", "admin.withdraw", "instruments.list", "admin.services", "admin.lag",
        "admin.dead_letters", "admin.replay", "quote.request", "order.index", "order.index.update",
    }, SEEN
    for op, statuses in SEEN.items():
        assert statuses.total() >= 50, (op, statuses)
        assert statuses[401] < statuses.total() / 10, (op, statuses)  # nearly every signature verified
    # (order.oco and order.bracket are not here: random prices are seldom in a list's order, stop < limit;
    # tests/e2e/test_platform.py places both)
    for op in ("orders.open", "order.place", "order.basket", "order.algo", "orders.history", "balances.get",
               "admin.account", "admin.deposit", "admin.withdraw", "admin.kill_switch", "instruments.list",
               "admin.services", "admin.lag", "admin.dead_letters", "admin.replay", "quote.request",
               "order.index"):
        assert SEEN[op][200] > 0, (op, SEEN[op])
    assert sum(s.total() for s in SEEN.values()) >= 2_000


async def test_the_document_refuses_what_the_server_refuses(unlimited: dict[str, Any]) -> None:
    """The drift the tester found: "0" amounts, limit=0, any permission, 401 missing on admin routes."""
    async with aiohttp.ClientSession() as http, http.get(unlimited["base"] + "/api/v1/openapi.json") as resp:
        doc = await resp.json()
    paths = doc["paths"]

    def body(path: str) -> dict[str, Any]:
        return {**paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"],
                "components": doc["components"]}

    def valid(schema: dict[str, Any], value: Any) -> bool:
        return jsonschema.Draft202012Validator(schema).is_valid(value)

    deposit = body("/api/v1/admin/deposits")
    for amount, ok in (("0", False), ("0.000", False), ("1000000000000000.5", False), ("1e3", False),
                       ("0.5", True), ("1000000000000000", True), (7, True), (0, False)):
        assert valid(deposit, {"account_id": "A", "asset": "USD", "amount": amount}) is ok, amount
    (limit,) = [p for p in paths["/api/v1/history"]["get"]["parameters"] if p["name"] == "limit"]
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
    accounts = body("/api/v1/admin/accounts")
    assert not valid(accounts, {"account_id": "x", "permissions": ["root"]})
    assert valid(accounts, {"account_id": "x", "permissions": ["read", "admin"]})
    for path, ops in paths.items():
        for method, op in ops.items():
            assert {"401", "403", "500", "503"} <= set(op["responses"]), (method, path)

"""The gateway as it runs: a real process, real HTTP and WebSocket clients, the real broker and MongoDB."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from orderstream.client import GatewayClient as Client
from orderstream.common import records as r
from tests.conftest import Infra
from tests.e2e.stack import CODEC
from tests.integration.gateway_process import running_gateway
from tests.kafka_tools import produce, read

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def gateway(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with running_gateway(
        infra,
        tmp_path_factory.mktemp("gateway"),
        ORDERSTREAM_GATEWAY_ORDERS_PER_S="2",
        ORDERSTREAM_GATEWAY_ORDERS_BURST="20",
        ORDERSTREAM_GATEWAY_MAX_FRAME_BYTES="4096",
    ) as gw:
        yield gw


def order(cid: str, **kw: Any) -> dict[str, Any]:
    return {
        "client_order_id": cid,
        "symbol": "BTC-USD",
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": "0.01",
        "price": "30000",
        **kw,
    }


async def test_login_failures_each_have_their_code(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    path, body = "/api/v1/orders", json.dumps(order("x1")).encode()
    async with aiohttp.ClientSession() as http:

        async def post(headers: dict[str, str]) -> tuple[int, Any]:
            async with http.post(gateway["base"] + path, data=body, headers=headers) as resp:
                return resp.status, (await resp.json())["error"]["code"]

        assert await post({}) == (401, 40100)
        assert await post({**a.headers("POST", path, body), "X-OS-KEY": "nokey"}) == (401, 40101)
        assert await post({**a.headers("POST", path, body), "X-OS-SIGNATURE": "00" * 32}) == (401, 40102)
        assert await post(a.headers("POST", path, body, ts=int(time.time() * 1000) - 60_000)) == (401, 40103)
        signed = a.headers("POST", path, body)
        async with http.post(gateway["base"] + path, data=body, headers=signed) as resp:
            assert resp.status == 200
        assert await post(signed) == (401, 40104)  # the same signed request again
    assert a.secret not in gateway["log"].read_text()  # never logged


async def test_validation_errors_name_the_field(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http:
        cases = [
            ({k: v for k, v in order("v1").items() if k != "side"}, 40001, "side"),
            (order("v2", quantity=0.01), 40001, "quantity"),
            (order("v3", price="abc"), 40001, "price"),
            (order("v4", symbol="NOPE-USD"), 40010, "symbol"),
            (order("v5", price="30000.3"), 40011, "price"),
            (order("v6", quantity="0.0005"), 40012, "quantity"),
            (order("v7", colour="red"), 40001, "colour"),
            (order("v8", quantity="1000000000000001"), 40001, "quantity"),  # above 10^15
            # beyond an Avro long: was a 503 (the command could not be encoded), found by the property run
            (order("v9", time_in_force="GTD", expire_at=-47748360683503952592896), 40001, "expire_at"),
            (order("v10", time_in_force="GTD", expire_at=2**63), 40001, "expire_at"),
        ]
        for body, code, field in cases:
            status, _, answer = await a.call(http, "POST", "/api/v1/orders", body)
            assert (status, answer["error"]["code"], answer["error"]["details"]["field"]) == (
                400,
                code,
                field,
            ), body
        status, _, answer = await a.call(http, "POST", "/api/v1/orders", raw=b"{not json")
        assert (status, answer["error"]["code"]) == (400, 40002)


async def test_websocket_errors_keep_the_connection(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway["base"] + "/ws") as ws:
        await ws.send_str("not json")
        assert (await ws.receive_json(timeout=10))["error"]["code"] == 40002
        await ws.send_json({"id": 1, "method": "order.place", "params": order("w0")})
        assert (await ws.receive_json(timeout=10))["error"]["code"] == 40100  # not logged in
        assert (await a.login(ws))["result"]["account_id"] == "A"
        await ws.send_json({"id": 2, "method": "order.teleport", "params": {}})
        assert (await ws.receive_json(timeout=10))["error"]["code"] == 40003
        await ws.send_str(
            json.dumps({"id": 3, "method": "order.place", "params": order("w1", pad="x" * 5000)})
        )
        assert (await ws.receive_json(timeout=10))["error"]["code"] == 41301
        await ws.send_json({"id": 4, "method": "order.place", "params": order("w2", quantity="-1")})
        answer = await ws.receive_json(timeout=10)
        assert answer["id"] == 4 and answer["error"]["details"]["field"] == "quantity"
        await ws.send_json({"id": 5, "method": "order.place", "params": order("w3")})
        assert (await ws.receive_json(timeout=10))["result"]["client_order_id"] == "w3"  # still alive


async def test_a_placed_order_is_an_avro_record_on_order_commands_once(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http:
        status, headers, first = await a.call(http, "POST", "/api/v1/orders", order("p1", price="29000.5"))
        assert status == 200 and not first["duplicate"]
        status, _, again = await a.call(http, "POST", "/api/v1/orders", order("p1", price="29000.5"))
        assert again == {**first, "duplicate": True}
    msgs = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 10**6, timeout=5)
    mine = [(m, CODEC.decode(m.value)) for m in msgs]
    mine = [(m, c) for m, c in mine if isinstance(c, r.SubmitOrder) and c.client_order_id == "p1"]
    # the repeat sends the same command again (same command id, ignored downstream): one order
    assert len(mine) == 2 and mine[0][1] == mine[1][1]
    msg, cmd = mine[0]
    assert (cmd.account_id, cmd.order_id, cmd.price, msg.key) == (
        "A",
        first["order_id"],
        Decimal("29000.5"),
        b"A",
    )
    assert dict(msg.headers)["x-request-id"].decode() == headers["X-Request-Id"]
    access = [
        json.loads(line) for line in gateway["log"].read_text().splitlines() if '"http request"' in line
    ]
    mine_logged = [e for e in access if e.get("request_id") == headers["X-Request-Id"]]
    assert [(e["method"], e["route"], e["status"], e["key"]) for e in mine_logged] == [
        ("POST", "/api/v1/orders", 200, a.key)
    ]


async def test_admin_deposits_and_withdrawals_are_collateral_commands(gateway: dict[str, Any]) -> None:
    admin: Client = gateway["admin"]
    async with aiohttp.ClientSession() as http:
        s1, _, dep = await admin.call(
            http, "POST", "/api/v1/admin/deposits", {"account_id": "A", "asset": "USD", "amount": "250.5"}
        )
        s2, _, wd = await admin.call(
            http,
            "POST",
            "/api/v1/admin/withdrawals",
            {"account_id": "A", "asset": "USD", "amount": "100", "destination": "bank:1"},
        )
        s3, _, bad = await admin.call(
            http, "POST", "/api/v1/admin/withdrawals", {"account_id": "A", "asset": "USD", "amount": "1"}
        )
        s4, _, kill = await admin.call(
            http,
            "POST",
            "/api/v1/admin/kill-switch",
            {"scope": "SYMBOL", "target": "BTC-USD", "engaged": True, "reason": "halt"},
        )
    assert (s1, s2, s4) == (200, 200, 200)
    (switch,) = await read(gateway["bootstrap"], gateway["prefix"] + "risk.commands", 1, timeout=10)
    assert switch.key == b"SYMBOL:BTC-USD"
    assert CODEC.decode(switch.value) == r.SetKillSwitch(
        command_id=kill["command_id"],
        ts_event=CODEC.decode(switch.value).ts_event,
        scope="SYMBOL",
        target="BTC-USD",
        engaged=True,
        reason="halt",
    )
    assert (s3, bad["error"]["code"], bad["error"]["details"]["field"]) == (400, 40001, "destination")
    msgs = await read(gateway["bootstrap"], gateway["prefix"] + "collateral.commands", 10**6, timeout=5)
    by_id = {c.command_id: (m.key, c) for m in msgs for c in [CODEC.decode(m.value)]}
    key, deposit = by_id[dep["command_id"]]
    assert (key, type(deposit), deposit.amount) == (b"A", r.Deposit, Decimal("250.5"))
    key, withdraw = by_id[wd["command_id"]]
    assert (key, type(withdraw), withdraw.amount, withdraw.destination) == (
        b"A",
        r.Withdraw,
        Decimal("100"),
        "bank:1",
    )


async def test_iceberg_and_basket_orders_become_their_commands(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http:
        s1, _, ice = await a.call(
            http,
            "POST",
            "/api/v1/orders",
            order("ice1", quantity="0.05", display_quantity="0.01", self_trade_prevention="CANCEL_BOTH"),
        )
        basket = {
            "client_order_id": "bk1",
            "quantity": "2",
            "legs": [
                {"symbol": "BTC-USD", "side": "BUY", "weight": "0.01", "price": "30000"},
                {"symbol": "BTC-USD", "side": "SELL", "weight": "0.02"},
            ],
        }
        s2, _, twice = await a.call(http, "POST", "/api/v1/baskets", basket)
        assert (s2, twice["error"]["details"]["field"]) == (400, "legs")  # each symbol once
        basket["legs"][1]["symbol"] = "ETH-USD"
        s3, _, unknown = await a.call(http, "POST", "/api/v1/baskets", basket)
        assert (s3, unknown["error"]["code"], unknown["error"]["details"]["field"]) == (
            400,
            40010,
            "legs.1.symbol",
        )
        # 20 digits each: quantity x weight has 40, beyond the wire decimal (it was a 500)
        huge = {**basket, "client_order_id": "bk-huge", "quantity": "1000000000000000",
                "legs": [{**basket["legs"][0], "weight": "999999999999999.999999999999999999"}]}
        s_huge, _, too_big = await a.call(http, "POST", "/api/v1/baskets", huge)
        assert (s_huge, too_big["error"]["code"], too_big["error"]["details"]["field"]) == (
            400, 40012, "legs.0.weight")
        basket["legs"].pop()
        s4, _, bk = await a.call(http, "POST", "/api/v1/baskets", basket)
        assert (s1, s4) == (200, 200)
        child = bk["order_id"] + "/0"
        s5, _, whole = await a.call(http, "DELETE", f"/api/v1/orders/{bk['order_id']}")
        assert (s5, whole["error"]["code"]) == (409, 40904)
        s6, _, _ = await a.call(http, "DELETE", f"/api/v1/orders/{child}")
        s7, _, _ = await gateway["B"].call(http, "DELETE", f"/api/v1/orders/{child}")
        assert (s6, s7) == (200, 404)
    msgs = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 10**6, timeout=5)
    cmds = [CODEC.decode(m.value) for m in msgs]
    (iceberg,) = [c for c in cmds if isinstance(c, r.SubmitOrder) and c.client_order_id == "ice1"]
    assert (iceberg.order_id, iceberg.display_quantity, iceberg.self_trade_prevention) == (
        ice["order_id"],
        Decimal("0.01"),
        r.SelfTradePrevention.CANCEL_BOTH,
    )
    (sb,) = [c for c in cmds if isinstance(c, r.SubmitBasket)]
    assert (sb.order_id, sb.quantity, [(x.symbol, x.side, x.weight) for x in sb.legs]) == (
        bk["order_id"],
        Decimal(2),
        [("BTC-USD", r.Side.BUY, Decimal("0.01"))],
    )
    (cancel,) = [c for c in cmds if isinstance(c, r.CancelOrder) and c.order_id == child]
    assert (cancel.symbol, cancel.client_order_id) == ("BTC-USD", "bk1/0")


async def test_pipelined_orders_are_sent_once_each_and_a_cancel_follows_its_order(
    gateway: dict[str, Any],
) -> None:
    a: Client = gateway["A"]
    cids = [f"pipe{i}" for i in range(8)] + ["pipe0", "pipe3"]  # two repeats inside the same burst
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway["base"] + "/ws") as ws:
        await a.login(ws)
        for n, cid in enumerate(cids):
            await ws.send_json({"id": n, "method": "order.place", "params": order(cid)})
        answers = {}
        while len(answers) < len(cids):
            frame = await ws.receive_json(timeout=15)
            answers[frame["id"]] = frame["result"]
        first = answers[1]["order_id"]
        await ws.send_json({"id": "p", "method": "order.place", "params": order("pipe-x")})
        placed = await ws.receive_json(timeout=15)
        await ws.send_json(
            {"id": "c", "method": "order.cancel", "params": {"order_id": placed["result"]["order_id"]}}
        )
        assert (await ws.receive_json(timeout=15))["result"]["cancel"] == "requested"
    assert answers[8]["order_id"] == answers[0]["order_id"] and answers[8]["duplicate"]
    assert answers[9]["order_id"] == answers[3]["order_id"] and answers[9]["duplicate"]
    assert len({answers[n]["order_id"] for n in range(8)}) == 8 and first != answers[0]["order_id"]
    msgs = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 10**6, timeout=5)
    cmds = [c for m in msgs if m.key == b"A" for c in [CODEC.decode(m.value)]]
    placed_ids = [
        c.client_order_id
        for c in cmds
        if isinstance(c, r.SubmitOrder) and c.client_order_id.startswith("pipe")
    ]
    assert set(placed_ids) == {*cids, "pipe-x"}
    one_command_each = {
        c.client_order_id: {c.command_id}
        for c in cmds
        if isinstance(c, r.SubmitOrder) and c.client_order_id in cids
    }
    assert all(len(ids) == 1 for ids in one_command_each.values())
    kinds = [type(c).__name__ for c in cmds if c.order_id == placed["result"]["order_id"]]
    assert kinds == ["SubmitOrder", "CancelOrder"]


@pytest.mark.parametrize(
    ("case", "age_s", "in_history", "resent"),
    [
        ("lost1", 0, False, True),  # young: sent again at once (collateral remembers the order id)
        ("lost2", 3600, False, True),  # old, and the order never reached the services: sent now
        ("lost3", 3600, True, False),  # old, and the order is in the history: answered, not sent
    ],
)
async def test_a_repeated_order_is_sent_again_only_when_it_may_have_been_lost(
    gateway: dict[str, Any], infra: Infra, case: str, age_s: float, in_history: bool, resent: bool
) -> None:
    """The gateway stored the order's idempotency document, and maybe its send failed: the client's
    retry with the same client_order_id gets the original order id, and the original command is sent
    again unless it is too old for the services to recognise it and the history shows it arrived."""
    from motor.motor_asyncio import AsyncIOMotorClient

    order_id = f"BTC-USD-{case}"
    command = r.SubmitOrder(
        command_id=f"gw-{case}",
        ts_event=time.time_ns(),
        account_id="A",
        order_id=order_id,
        client_order_id=case,
        symbol="BTC-USD",
        side="BUY",
        order_type="LIMIT",
        time_in_force="GTC",
        quantity=Decimal("0.01"),
        price=Decimal(30000),
    )
    db: Any = AsyncIOMotorClient(infra.mongo_url)[gateway["database"]]
    await AsyncIOMotorClient(infra.mongo_url)[gateway["order_database"]]["gateway_orders"].insert_one(
        {
            "_id": f"A|{case}",
            "order_id": order_id,
            "account_id": "A",
            "client_order_id": case,
            "symbol": "BTC-USD",
            "ts": time.time() - age_s,
            "command": CODEC.encode(command),
            "topic": gateway["prefix"] + "order.commands",
        }
    )
    if in_history:
        await db["trader_orders"].insert_one({"_id": order_id, "account_id": "A", "status": "FILLED"})
    try:
        async with aiohttp.ClientSession() as http:
            status, _, answer = await gateway["A"].call(http, "POST", "/api/v1/orders", order(case))
            # a later order on the same key: once it is on the broker, so is any resend before it
            next_order = await gateway["A"].call(http, "POST", "/api/v1/orders", order(f"{case}-next"))
            assert next_order[0] == 200
    finally:  # A's read model is checked by another test
        await db["trader_orders"].delete_one({"_id": order_id})
    assert (status, answer) == (200, {"order_id": order_id, "client_order_id": case, "duplicate": True})
    msgs = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 10**6, timeout=5)
    sent = [CODEC.decode(m.value) for m in msgs if m.key == b"A"]
    assert any(getattr(c, "client_order_id", None) == f"{case}-next" for c in sent)
    assert [c for c in sent if getattr(c, "client_order_id", None) == case] == ([command] if resent else [])


async def test_order_documents_of_an_older_gateway_move_to_the_order_database(
    infra: Infra, tmp_path: Path
) -> None:
    """A gateway from before `orders_database` kept its idempotency documents in the main database:
    the first gateway to start moves them, so a late repeat is still answered with the original
    order id and not placed again."""
    from motor.motor_asyncio import AsyncIOMotorClient

    database = f"gw{uuid.uuid4().hex[:8]}"
    client: Any = AsyncIOMotorClient(infra.mongo_url)
    old = client[database]["gateway_orders"]
    await old.insert_many([
        {"_id": f"A|moved{n}", "order_id": f"BTC-USD-moved{n}", "account_id": "A",
         "client_order_id": f"moved{n}", "symbol": "BTC-USD", "ts": time.time() - 7200}
        for n in range(2500)  # more than one batch of the move
    ])
    env = {"ORDERSTREAM_GATEWAY_MONGO_DATABASE": database}
    async with running_gateway(infra, tmp_path, accounts=("A",), **env) as gw:
        assert gw["order_database"] == f"{database}_gateway"
        assert await client[gw["order_database"]]["gateway_orders"].count_documents({}) == 2500
        assert "gateway_orders" not in await client[database].list_collection_names()
        async with aiohttp.ClientSession() as http:
            status, _, answer = await gw["A"].call(http, "POST", "/api/v1/orders", order("moved7"))
        assert (status, answer["order_id"], answer["duplicate"]) == (200, "BTC-USD-moved7", True)
    await client.drop_database(database)
    await client.drop_database(f"{database}_gateway")
    client.close()


async def test_the_rate_limit_answers_429_and_recovers(gateway: dict[str, Any]) -> None:
    b: Client = gateway["B"]
    async with aiohttp.ClientSession() as http:
        codes, refusals = [], []
        for i in range(30):
            status, headers, _ = await b.call(http, "POST", "/api/v1/orders", order(f"rl{i}"))
            codes.append(status)
            if status == 429:
                refusals.append(headers)
        assert 429 in codes and codes[0] == 200
        assert all(int(h["Retry-After"]) >= 1 for h in refusals)  # the bucket refills meanwhile: not the last
        await asyncio.sleep(1.5)
        status, _, _ = await b.call(http, "POST", "/api/v1/orders", order("rl-after"))
        assert status == 200


async def test_no_key_sees_another_accounts_orders_or_reports(gateway: dict[str, Any]) -> None:
    a, b = gateway["A"], gateway["B"]
    async with aiohttp.ClientSession() as http:
        _, _, placed = await a.call(http, "POST", "/api/v1/orders", order("iso1"))
        oid = placed["order_id"]
        assert (await a.call(http, "GET", f"/api/v1/orders/{oid}"))[0] == 200
        assert (await b.call(http, "GET", f"/api/v1/orders/{oid}"))[0] == 404
        assert (await b.call(http, "DELETE", f"/api/v1/orders/{oid}"))[0] == 404
        status, _, answer = await b.call(
            http, "POST", "/api/v1/admin/deposits", {"account_id": "B", "asset": "USD", "amount": "5"}
        )
        assert (status, answer["error"]["code"]) == (403, 40301)
        async with (
            http.ws_connect(gateway["base"] + "/ws") as wa,
            http.ws_connect(gateway["base"] + "/ws") as wb,
        ):
            await a.login(wa)
            await b.login(wb)
            for ws in (wa, wb):
                await ws.send_json({"id": "s", "method": "subscribe", "params": {"stream": "user"}})
                assert (await ws.receive_json(timeout=10))["result"]["subscribed"]
            await asyncio.sleep(1)  # the report reader is positioned at the end of the topic
            report = r.ExecutionReport(
                event_id=f"rep-{oid}",
                ts_event=time.time_ns(),
                account_id="A",
                order_id=oid,
                client_order_id="iso1",
                symbol="BTC-USD",
                sequence=1,
                status="ACCEPTED",
                side="BUY",
                order_type="LIMIT",
                quantity=Decimal("0.01"),
                price=Decimal(30000),
                filled_quantity=Decimal(0),
                remaining_quantity=Decimal("0.01"),
                fees=Decimal(0),
            )
            await produce(
                gateway["bootstrap"],
                gateway["prefix"] + "execution.reports",
                [(b"A", CODEC.encode(report), {})],
            )
            pushed = await wa.receive_json(timeout=15)
            assert pushed["type"] == "execution_report" and pushed["data"]["order_id"] == oid
            balance = r.Deposited(
                event_id=f"dep-{oid}",
                ts_event=time.time_ns(),
                account_id="A",
                asset="USD",
                command_id=f"c-{oid}",
                amount=Decimal(7),
                lot_id=f"lot-{oid}",
                source="bank",
                free=Decimal(7),
                held=Decimal(0),
            )
            await produce(
                gateway["bootstrap"],
                gateway["prefix"] + "collateral.events",
                [(b"A", CODEC.encode(balance), {})],
            )
            pushed = await wa.receive_json(timeout=15)
            assert (pushed["type"], pushed["data"]["asset"], pushed["data"]["free"]) == (
                "deposited",
                "USD",
                "7.000000000000000000",
            )
            with pytest.raises(asyncio.TimeoutError):
                await wb.receive_json(timeout=2)


async def test_openapi_document_is_served(gateway: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http, http.get(gateway["base"] + "/api/v1/openapi.json") as resp:
        doc = await resp.json()
    validate(doc)  # a valid OpenAPI 3.0 document (openapi-spec-validator)
    assert "/api/v1/orders" in doc["paths"]
    served = {
        ("GET", "/api/v1/orders"),
        ("POST", "/api/v1/orders"),
        ("POST", "/api/v1/baskets"),
        ("POST", "/api/v1/algo-orders"),
        ("POST", "/api/v1/quotes"),
        ("POST", "/api/v1/index-orders"),
        ("PATCH", "/api/v1/index-orders/{order_id}"),
        ("GET", "/api/v1/orders/{order_id}"),
        ("PATCH", "/api/v1/orders/{order_id}"),
        ("DELETE", "/api/v1/orders/{order_id}"),
        ("GET", "/api/v1/history"),
        ("GET", "/api/v1/balances"),
        ("POST", "/api/v1/oco"),
        ("POST", "/api/v1/brackets"),
        ("POST", "/api/v1/admin/accounts"),
        ("POST", "/api/v1/admin/deposits"),
        ("POST", "/api/v1/admin/withdrawals"),
        ("POST", "/api/v1/admin/kill-switch"),
        ("GET", "/api/v1/instruments"),  # the web pages' (gateway/console.py)
        ("GET", "/api/v1/admin/services"),
        ("GET", "/api/v1/admin/lag"),
        ("GET", "/api/v1/admin/dead-letters"),
        ("POST", "/api/v1/admin/dead-letters/replay"),
    }
    documented = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert documented == served
    assert (
        "quantity"
        in doc["paths"]["/api/v1/orders"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )


async def test_market_stream_sends_the_snapshot_then_only_newer_updates(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    prefix, bootstrap = gateway["prefix"], gateway["bootstrap"]
    level = r.PriceLevel(side="BID", price=Decimal(29000), quantity=Decimal(1))
    await produce(
        bootstrap,
        prefix + "md.depth",
        [
            (
                b"BTC-USD",
                CODEC.encode(r.DepthSnapshot(symbol="BTC-USD", ts_event=1, sequence=5, levels=[level])),
                {},
            )
        ],
    )
    await asyncio.sleep(1.5)  # the gateway's depth mirror follows the compacted topic
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway["base"] + "/ws") as ws:
        await a.login(ws)
        await ws.send_json(
            {"id": "m", "method": "subscribe", "params": {"stream": "market", "symbol": "NOPE"}}
        )
        assert (await ws.receive_json(timeout=10))["error"]["code"] == 40010
        await ws.send_json(
            {"id": "m", "method": "subscribe", "params": {"stream": "market", "symbol": "BTC-USD"}}
        )
        sub = (await ws.receive_json(timeout=10))["result"]
        assert (
            sub["snapshot"]["sequence"] == 5
            and sub["snapshot"]["levels"][0]["price"] == "29000.000000000000000000"
        )
        await asyncio.sleep(1)
        updates = [
            r.BookUpdate(symbol="BTC-USD", ts_event=2, sequence=seq, changes=[level]) for seq in (5, 6)
        ]
        trade = r.Trade(
            trade_id="t1",
            ts_event=3,
            symbol="BTC-USD",
            price=Decimal(29000),
            quantity=Decimal(1),
            aggressor_side="SELL",
            sequence=7,
        )
        await produce(bootstrap, prefix + "md.book", [(b"BTC-USD", CODEC.encode(u), {}) for u in updates])
        await produce(bootstrap, prefix + "md.trades", [(b"BTC-USD", CODEC.encode(trade), {})])
        got = [await ws.receive_json(timeout=10) for _ in range(2)]
        assert sorted((g["type"], g["data"]["sequence"]) for g in got) == [("book", 6), ("trade", 7)]


async def test_balances_open_orders_and_history_come_from_the_read_model(
    gateway: dict[str, Any], infra: Infra
) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    from orderstream.collector.store import write_batch
    from orderstream.common.history import order_document

    a, b = gateway["A"], gateway["B"]
    db: Any = AsyncIOMotorClient(infra.mongo_url)[gateway["database"]]  # the collector's read model
    held = r.CollateralHeld(
        event_id="h1",
        ts_event=2,
        account_id="A",
        asset="USD",
        order_id="o1",
        amount=Decimal(10),
        free=Decimal(90),
        held=Decimal(10),
        sequence=2,
    )
    dep = r.Deposited(
        event_id="d1",
        ts_event=1,
        account_id="A",
        asset="USD",
        command_id="c",
        amount=Decimal(100),
        lot_id="l",
        source="bank",
        free=Decimal(100),
        held=Decimal(0),
        sequence=1,
    )
    await write_batch(db, [held, dep])  # the collector's write path; the higher sequence wins
    report = r.ExecutionReport(
        event_id="e1",
        ts_event=5,
        account_id="A",
        order_id="o1",
        client_order_id="c1",
        symbol="BTC-USD",
        sequence=1,
        status="ACCEPTED",
        side="BUY",
        order_type="LIMIT",
        quantity=Decimal(1),
        price=Decimal(10),
        filled_quantity=Decimal(0),
        remaining_quantity=Decimal(1),
        fees=Decimal(0),
    )
    await db["trader_orders"].insert_one(order_document(report))
    async with aiohttp.ClientSession() as http:
        status, _, body = await a.call(http, "GET", "/api/v1/balances")
        usd = body["balances"]["USD"]
        assert status == 200 and (Decimal(usd["free"]), Decimal(usd["held"])) == (90, 10)  # the newest event
        assert (await b.call(http, "GET", "/api/v1/balances"))[2]["balances"] == {}
        status, _, body = await a.call(http, "GET", "/api/v1/orders")
        assert [o["order_id"] for o in body["orders"]] == ["o1"] and body["next"] is None
        assert (await b.call(http, "GET", "/api/v1/orders"))[2]["orders"] == []
        async with http.ws_connect(gateway["base"] + "/ws") as ws:
            await a.login(ws)
            await ws.send_json({"id": "h", "method": "orders.history", "params": {"limit": 10}})
            answer = await ws.receive_json(timeout=10)
            assert [o["order_id"] for o in answer["result"]["orders"]] == ["o1"]
            await ws.send_json({"id": "h", "method": "orders.history", "params": {"limit": 0}})
            assert (await ws.receive_json(timeout=10))["error"]["details"]["field"] == "limit"


async def test_replace_is_a_replace_order_record_and_only_the_owner_may(gateway: dict[str, Any]) -> None:
    a, b = gateway["A"], gateway["B"]
    async with aiohttp.ClientSession() as http:
        _, _, placed = await a.call(http, "POST", "/api/v1/orders", order("rp1"))
        oid = placed["order_id"]
        status, _, answer = await a.call(http, "PATCH", f"/api/v1/orders/{oid}", {"price": "31000"})
        assert (status, answer["replace"]) == (200, "requested")
        assert (await b.call(http, "PATCH", f"/api/v1/orders/{oid}", {"price": "31000"}))[0] == 404
        status, _, answer = await a.call(http, "PATCH", f"/api/v1/orders/{oid}", {})
        assert (status, answer["error"]["code"]) == (400, 40001)
        status, _, answer = await a.call(http, "PATCH", f"/api/v1/orders/{oid}", {"price": "31000.2"})
        assert (status, answer["error"]["code"]) == (400, 40011)
    msgs = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 10**6, timeout=5)
    replaces = [
        c
        for c in (CODEC.decode(m.value) for m in msgs)
        if isinstance(c, r.ReplaceOrder) and c.order_id == oid
    ]
    assert [(c.price, c.quantity, c.client_order_id) for c in replaces] == [(Decimal(31000), None, "rp1")]


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
PLACE_PARAMS = st.fixed_dictionaries(
    {"client_order_id": st.text(min_size=1, max_size=10) | st.integers()},
    optional={
        "symbol": st.sampled_from(["BTC-USD", "NOPE", ""]) | JSONISH,
        "side": st.sampled_from(["BUY", "SELL", "buy"]) | JSONISH,
        "order_type": st.sampled_from(["LIMIT", "MARKET", "STOP_LIMIT"]),
        "quantity": st.sampled_from(["0.01", "1", "-1", "0.0001", "1e3"]) | JSONISH,
        "price": st.sampled_from(["30000", "30000.5", "30000.25", "0"]) | JSONISH,
        "extra": JSONISH,
    },
)
FRAMES = st.one_of(
    st.fixed_dictionaries({"id": st.integers(), "method": st.just("order.place"), "params": PLACE_PARAMS}),
    st.fixed_dictionaries(
        {
            "id": JSONISH,
            "method": st.sampled_from(
                [
                    "order.cancel",
                    "order.get",
                    "order.replace",
                    "orders.history",
                    "subscribe",
                    "balances.get",
                    "x",
                ]
            ),
            "params": JSONISH,
        }
    ),
    JSONISH,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=st.lists(FRAMES, min_size=1, max_size=5))
def test_fuzzed_frames_get_an_answer_never_a_server_error_or_a_dropped_connection(
    gateway: dict[str, Any], frames: list[Any]
) -> None:
    """Every frame gets a result or a documented error; the connection stays up; REST never answers 5xx."""

    async def run() -> None:
        a: Client = gateway["A"]
        async with aiohttp.ClientSession() as http, http.ws_connect(gateway["base"] + "/ws") as ws:
            await a.login(ws)
            for frame in frames:
                await ws.send_str(json.dumps(frame))
                answer = await ws.receive_json(timeout=10)
                assert "result" in answer or 40000 <= answer["error"]["code"] < 50000, answer
            await ws.send_json({"id": "alive", "method": "orders.open", "params": {}})
            assert (await ws.receive_json(timeout=10))["id"] == "alive"
            for frame in frames:
                body = frame.get("params") if isinstance(frame, dict) else frame
                status, _, answer = await a.call(
                    http, "POST", "/api/v1/orders", raw=json.dumps(body).encode()
                )
                assert status < 500, answer

    asyncio.run(run())

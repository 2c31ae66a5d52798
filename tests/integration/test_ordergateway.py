"""The OrderGateway protocol (the design document's section 4) on a real gateway process, real broker
and MongoDB. The clients are written from the document alone: its endpoints, `auth.login` with
`api_key` and `api_secret`, its order fields with JSON numbers, and its pushes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orderstream.client import GatewayClient as Client
from orderstream.client import sign
from orderstream.common import records as r
from tests import reports
from tests.conftest import Infra
from tests.e2e.stack import CODEC
from tests.integration.gateway_process import running_gateway
from tests.kafka_tools import produce, read

pytestmark = pytest.mark.integration

ACCOUNTS = ("A", "B", "C", "D")


@pytest.fixture(scope="module")
async def gateway(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    async with running_gateway(
        infra,
        tmp_path_factory.mktemp("ordergateway"),
        accounts=ACCOUNTS,
        ORDERSTREAM_GATEWAY_OG_ORDERS_PER_S="2",
        ORDERSTREAM_GATEWAY_OG_ORDERS_BURST="20",
        ORDERSTREAM_GATEWAY_OG_MARKET_DATA_PER_S="5",
    ) as gw:
        yield gw


def ws_url(gateway: dict[str, Any], endpoint: str) -> str:
    return gateway["base"].replace("http", "ws", 1) + endpoint


def credentials(c: Client) -> dict[str, str]:
    return {"api_key": c.key, "api_secret": c.secret}


async def login(ws: aiohttp.ClientWebSocketResponse, c: Client) -> dict[str, Any]:
    await ws.send_json({"method": "auth.login", "params": credentials(c)})
    answer: dict[str, Any] = await ws.receive_json(timeout=15)
    return answer


def signed_login(c: Client, endpoint: str) -> dict[str, str]:
    """auth.login's params signed as on /ws, over the endpoint's path instead of /ws."""
    stamp = str(int(time.time() * 1000))
    return {"api_key": c.key, "timestamp": stamp, "signature": sign(c.secret, stamp, "GET", endpoint, b"")}


async def request(
    ws: aiohttp.ClientWebSocketResponse, rid: str, method: str, params: dict[str, Any] | str
) -> dict[str, Any]:
    """Send a request and wait for its answer; `params` as an object, or as JSON text (numbers written
    as the test wrote them)."""
    text = params if isinstance(params, str) else json.dumps(params)
    await ws.send_str(f'{{"method": {json.dumps(method)}, "params": {text}, "id": {json.dumps(rid)}}}')
    while True:
        answer: dict[str, Any] = json.loads(await ws.receive_str(timeout=20), parse_float=Decimal)
        if answer.get("id") == rid:
            return answer


async def commands(gateway: dict[str, Any], account: str) -> list[Any]:
    msgs = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 10**6, timeout=5)
    return [CODEC.decode(m.value) for m in msgs if m.key == account.encode()]


def report(order_id: str, client_order_id: str, sequence: int) -> r.ExecutionReport:
    """The order's report `sequence` (1 ACCEPTED, 2 PARTIALLY_FILLED 0.4 at 64000.5) of tests/reports.py."""
    return reports.report(0, sequence, account="A").model_copy(update={
        "event_id": f"{order_id}:{sequence}", "order_id": order_id, "client_order_id": client_order_id})


async def test_a_client_of_the_document_logs_in_places_sees_its_order_cancels_and_replaces(
    gateway: dict[str, Any],
) -> None:
    a: Client = gateway["A"]
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(gateway, "/orders")) as orders,
        http.ws_connect(ws_url(gateway, "/user-data")) as user,
    ):
        logged = await login(orders, a)
        assert logged == {
            "id": None,
            "result": {
                "authenticated": True,
                "user_id": "A",
                "permissions": ["market_data", "read", "trade"],
                "rate_limits": {"orders_per_second": 2, "market_data_per_second": 5, "burst_limit": 20},
            },
        }
        assert (await login(user, a))["result"]["authenticated"] is True
        # the document's order: JSON numbers, `type`, `account_id`, no client_order_id
        text = (
            '{"method": "order.place", "params": {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", '
            '"price": 30000.5, "quantity": 0.01, "account_id": "A"}, "id": "req_001"}'
        )
        await orders.send_str(text)
        placed = await orders.receive_json(timeout=20)
        assert placed["id"] == "req_001" and placed["result"]["status"] == "ACCEPTED", placed
        oid = placed["result"]["order_id"]
        assert abs(placed["result"]["timestamp"] - time.time() * 1000) < 60_000
        await orders.send_str(text)  # the same request id again: the same order, not a second one
        again = await orders.receive_json(timeout=20)
        assert (again["result"]["order_id"], again["result"]["duplicate"]) == (oid, True)

        await asyncio.sleep(1)  # the report reader is positioned at the end of the topic
        cid = placed["result"]["client_order_id"]
        await produce(
            gateway["bootstrap"],
            gateway["prefix"] + "execution.reports",
            [
                (b"A", CODEC.encode(report(oid, cid, 1)), {}),
                (b"A", CODEC.encode(report(oid, cid, 2)), {}),
            ],
        )
        accepted = await user.receive_str(timeout=20)
        partial = await user.receive_str(timeout=20)
        first = json.loads(accepted)
        assert first["stream"] == "user_data"
        assert {k: first["data"][k] for k in ("order_id", "status", "filled_quantity", "average_price")} == {
            "order_id": oid, "status": "ACCEPTED", "filled_quantity": 0, "average_price": None}
        assert isinstance(first["data"]["timestamp"], int)
        # amounts are JSON numbers written from their decimal digits
        assert '"filled_quantity":0.4' in partial and '"average_price":64000.5' in partial, partial
        assert json.loads(partial)["data"]["status"] == "PARTIALLY_FILLED"

        replaced = await request(orders, "r1", "order.replace", f'{{"order_id": "{oid}", "price": 30001}}')
        assert (replaced["result"]["order_id"], replaced["result"]["status"]) == (oid, "REPLACE_REQUESTED")
        canceled = await request(orders, "c1", "order.cancel", {"order_id": oid, "account_id": "A"})
        assert (canceled["result"]["order_id"], canceled["result"]["status"]) == (oid, "CANCEL_REQUESTED")
        missing = await request(orders, "c2", "order.cancel", {"order_id": "BTC-USD-nope"})
        assert missing["error"]["code"] == 40401
    sent = [c for c in await commands(gateway, "A") if c.order_id == oid]
    submits = [c for c in sent if isinstance(c, r.SubmitOrder)]
    assert {(c.price, c.quantity, c.order_type, c.client_order_id) for c in submits} == {
        (Decimal("30000.5"), Decimal("0.01"), r.OrderType.LIMIT, "id:req_001")}
    changes = [type(c).__name__ for c in sent if not isinstance(c, r.SubmitOrder)]
    assert changes == ["ReplaceOrder", "CancelOrder"]
    (replace,) = [c for c in sent if isinstance(c, r.ReplaceOrder)]
    assert replace.price == Decimal(30001)


async def test_bad_input_names_each_field_and_another_account_is_refused(gateway: dict[str, Any]) -> None:
    b: Client = gateway["B"]
    good = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": 30000, "quantity": 1,
            "account_id": "B"}
    cases: list[tuple[str, int, str]] = [
        ('{"symbol": "BTC-USD", "type": "LIMIT", "price": 30000, "quantity": 1}', 40001, "side"),
        (json.dumps({**good, "type": "LIMITED"}), 40001, "type"),
        (json.dumps({**good, "price": -1}), 40001, "price"),
        (json.dumps({**good, "quantity": "abc"}), 40001, "quantity"),
        (json.dumps({**good, "quantity": 0}), 40001, "quantity"),
        ('{"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": 30000, "quantity": 1e16}', 40001,
         "quantity"),
        (json.dumps({**good, "price": "30000.3"}), 40011, "price"),
        ('{"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": 30000, "quantity": 0.0005}', 40012,
         "quantity"),
        (json.dumps({**good, "symbol": "NOPE-USD"}), 40010, "symbol"),
        (json.dumps({**good, "colour": "red"}), 40001, "colour"),
        (json.dumps({**good, "order_type": "LIMIT"}), 40001, "order_type"),
        (json.dumps({k: v for k, v in good.items() if k != "price"}), 40001, "price"),
        (json.dumps({**good, "account_id": "A"}), 40301, "account_id"),
    ]
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(gateway, "/orders")) as ws:
        early = await request(ws, "e0", "order.place", good)
        assert (early["error"]["code"], early["error"]["message"]) == (40100, "log in first (auth.login)")
        await login(ws, b)
        for n, (params, code, name) in enumerate(cases):
            answer = await request(ws, f"bad{n}", "order.place", params)
            error = answer.get("error", {})
            got = (error.get("code"), error.get("details", {}).get("field"))
            assert got == (code, name), (params, answer)
            assert name in error["message"]
        await ws.send_str('{"method": "order.place", "params": {"price": NaN}, "id": "nan"}')
        assert (await ws.receive_json(timeout=15))["error"]["code"] == 40002
        wrong = await request(ws, "sub", "subscribe", {"symbols": ["BTC-USD"]})
        assert (wrong["error"]["code"], wrong["error"]["details"]["field"]) == (40003, "method")
        ok = await request(ws, "ok", "order.place", good)  # the connection is still up
        assert ok["result"]["status"] == "ACCEPTED"
    placed = [c for c in await commands(gateway, "B") if isinstance(c, r.SubmitOrder)]
    assert [(c.order_id, c.price, c.quantity) for c in placed] == [
        (ok["result"]["order_id"], Decimal(30000), Decimal(1))]


async def test_login_signed_or_with_the_secret_and_each_failure(gateway: dict[str, Any]) -> None:
    a: Client = gateway["A"]
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(gateway, "/user-data")) as ws:
        for params, code in (
            ({"api_key": a.key}, 40100),
            ({"api_key": "nokey", "api_secret": a.secret}, 40101),
            ({"api_key": a.key, "api_secret": a.secret + "x"}, 40102),
            ({"api_key": a.key, "api_secret": ["not", "a", "string"]}, 40100),
        ):
            answer = await request(ws, "l", "auth.login", params)
            assert answer["error"]["code"] == code, (params, answer)
        signed = signed_login(a, "/user-data")
        stamp = signed["timestamp"]
        assert (await request(ws, "s", "auth.login", signed))["result"]["user_id"] == "A"
        assert (await request(ws, "s", "auth.login", signed))["error"]["code"] == 40104  # a replay
        elsewhere = {**signed, "timestamp": str(int(stamp) + 1)}  # signed for another moment
        assert (await request(ws, "s", "auth.login", elsewhere))["error"]["code"] == 40102
    assert a.secret not in gateway["log"].read_text()


async def test_plain_login_is_refused_where_the_deployment_turns_it_off(
    infra: Infra, tmp_path: Path
) -> None:
    async with running_gateway(
        infra, tmp_path, accounts=("A",), ORDERSTREAM_GATEWAY_PLAIN_LOGIN="false"
    ) as gw:
        a: Client = gw["A"]
        async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(gw, "/orders")) as ws:
            refused = await login(ws, a)
            assert refused["error"]["code"] == 40105 and "sign the login" in refused["error"]["message"]
            assert refused["error"]["details"]["field"] == "api_secret"
            signed = signed_login(a, "/orders")
            assert (await request(ws, "s", "auth.login", signed))["result"]["authenticated"] is True


async def test_over_the_users_rates_requests_get_the_documents_error(gateway: dict[str, Any]) -> None:
    c: Client = gateway["C"]
    order = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "price": 100, "quantity": 0.001}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(gateway, "/orders")) as ws:
            await login(ws, c)
            for n in range(40):  # pipelined: the burst of 20 goes, then about 2 a second
                await ws.send_json({"method": "order.place", "params": order, "id": f"o{n}"})
            answers = [await ws.receive_json(timeout=20) for _ in range(40)]
        refused = [a["error"] for a in answers if "error" in a]
        accepted = [a for a in answers if "result" in a]
        assert 20 <= len(accepted) <= 24 and len(refused) == 40 - len(accepted), answers
        assert {e["code"] for e in refused} == {42901}
        assert all(e["details"]["retry_after_s"] > 0 for e in refused)
        async with http.ws_connect(ws_url(gateway, "/market-data")) as md:
            await login(md, c)
            for n in range(8):
                await md.send_json({"method": "subscribe", "params": {"symbols": ["BTC-USD"]}, "id": f"m{n}"})
            got: list[dict[str, Any]] = []
            while len([g for g in got if "id" in g]) < 8:
                got.append(await md.receive_json(timeout=20))
        md_refused = [g["error"] for g in got if "error" in g]
        assert md_refused and {e["code"] for e in md_refused} == {42902}, got
        assert next(g for g in got if g.get("result"))["result"] == {"symbols": ["BTC-USD"]}


async def test_market_data_pushes_the_book_last_trade_and_tick(gateway: dict[str, Any]) -> None:
    d: Client = gateway["D"]
    prefix, bootstrap = gateway["prefix"], gateway["bootstrap"]
    levels = [
        r.PriceLevel(side="BID", price=Decimal(29000), quantity=Decimal(1)),
        r.PriceLevel(side="ASK", price=Decimal(29500), quantity=Decimal("2.5")),
    ]
    snapshot = r.DepthSnapshot(symbol="BTC-USD", ts_event=1, sequence=105, levels=levels)
    await produce(bootstrap, prefix + "md.depth", [(b"BTC-USD", CODEC.encode(snapshot), {})])
    await asyncio.sleep(1.5)  # the gateway's depth mirror follows the compacted topic

    async def until(ws: aiohttp.ClientWebSocketResponse, check: Any) -> tuple[str, dict[str, Any]]:
        while True:
            text = await ws.receive_str(timeout=20)
            frame = json.loads(text, parse_float=Decimal)
            if frame.get("stream") == "market_data" and check(frame["data"]):
                return text, frame["data"]

    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(gateway, "/market-data")) as ws:
        assert (await login(ws, d))["result"]["user_id"] == "D"
        text, book = await until(ws, lambda data: data["tick"] >= 105)
        assert book == {"symbol": "BTC-USD", "bids": [[29000, 1]], "asks": [[29500, Decimal("2.5")]],
                        "last_trade": None, "tick": 105}, text
        update = r.BookUpdate(symbol="BTC-USD", ts_event=2, sequence=106, changes=[
            r.PriceLevel(side="BID", price=Decimal("29000.5"), quantity=Decimal("0.25")),
            r.PriceLevel(side="ASK", price=Decimal(29500), quantity=Decimal(2)),
        ])
        trade = r.Trade(trade_id="t1", ts_event=1_700_000_000_123_456_789, symbol="BTC-USD",
                        price=Decimal(29500), quantity=Decimal("0.5"), aggressor_side="BUY", sequence=107)
        await asyncio.sleep(1)  # the market-data reader is positioned at the end of the topics
        await produce(bootstrap, prefix + "md.book", [(b"BTC-USD", CODEC.encode(update), {})])
        await produce(bootstrap, prefix + "md.trades", [(b"BTC-USD", CODEC.encode(trade), {})])
        text, book = await until(ws, lambda data: data["tick"] == 107 and data["bids"][0][0] != 29000)
        assert '"bids":[[29000.5,0.25],[29000,1]]' in text and '"asks":[[29500,2]]' in text, text
        last = {"price": 29500, "quantity": Decimal("0.5"), "timestamp": 1_700_000_000_123}  # ms
        assert book["last_trade"] == last
        unknown = await request(ws, "s1", "subscribe", {"symbols": ["NOPE"]})
        assert (unknown["error"]["code"], unknown["error"]["details"]["field"]) == (40010, "symbols.0")
        sub = await request(ws, "s2", "subscribe", {"symbols": ["BTC-USD"]})
        assert sub["result"] == {"symbols": ["BTC-USD"]}
        unsub = await request(ws, "s3", "unsubscribe", {"symbols": ["BTC-USD"]})
        assert unsub["result"] == {"symbols": []}


async def test_parent_orders_beyond_the_document_go_the_gateways_order_path(gateway: dict[str, Any]) -> None:
    """/orders also takes the gateway's parent orders in its own field names (JSON numbers too): an OCO,
    a bracket and a TWAP are answered ACCEPTED once on the broker, and a bad OCO names its field."""
    b: Client = gateway["B"]
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(gateway, "/orders")) as orders:
        assert (await login(orders, b))["result"]["authenticated"] is True
        oco = await request(orders, "oco1", "order.oco", '{"symbol": "BTC-USD", "side": "SELL", '
                            '"quantity": 0.01, "price": 70000, "stop_price": 60000, "account_id": "B"}')
        bracket = await request(orders, "br1", "order.bracket", '{"symbol": "BTC-USD", "side": "BUY", '
                                '"quantity": 0.01, "price": 30000, "take_profit_price": 31000, '
                                '"stop_price": 29000}')
        twap = await request(orders, "tw1", "order.algo", {
            "symbol": "BTC-USD", "side": "SELL", "algo": "TWAP", "quantity": "0.02", "duration_ms": 10000,
            "slice_interval_ms": 1000})
        for answer in (oco, bracket, twap):
            assert answer["result"]["status"] == "ACCEPTED", answer
        bad = await request(orders, "oco2", "order.oco", {
            "symbol": "BTC-USD", "side": "SELL", "quantity": "0.01", "price": "50000", "stop_price": "60000"})
        assert (bad["error"]["code"], bad["error"]["details"]["field"]) == (40001, "price")
    sent = {c.order_id: c for c in await commands(gateway, "B")}
    lists = [sent[a["result"]["order_id"]] for a in (oco, bracket)]
    assert [(type(c).__name__, c.contingency.value, c.client_order_id) for c in lists] == [  # type: ignore[attr-defined]
        ("SubmitOrderList", "OCO", "id:oco1"), ("SubmitOrderList", "BRACKET", "id:br1")]
    assert [o.price for o in lists[1].orders] == [Decimal(30000), Decimal(31000), None]  # type: ignore[attr-defined]
    assert type(sent[twap["result"]["order_id"]]).__name__ == "SubmitAlgoOrder"


async def test_user_data_pushes_a_parents_progress_in_the_documents_shape(gateway: dict[str, Any]) -> None:
    """A TWAP's and an index order's progress events reach /user-data as order updates (the document's
    fields first, then the parent's own), amounts as JSON numbers from their digits."""
    c: Client = gateway["C"]
    now = time.time_ns()
    twap = r.AlgoOrderUpdated(
        event_id="tw:1", ts_event=now, account_id="C", order_id="BTC-USD-tw", client_order_id="tw",
        symbol="BTC-USD", side="BUY", algo="TWAP", sequence=1, status="WORKING", quantity=Decimal("0.6"),
        filled_quantity=Decimal("0.2"), average_price=Decimal("30000.5"), window_twap=Decimal("30001"),
        slices_sent=3, start_at=now, end_at=now + 10**10)
    index = r.IndexOrderUpdated(
        event_id="ix:1", ts_event=now, account_id="C", order_id="INDEX-ix", client_order_id="ix", sequence=1,
        status="COMPLETED", asset="USD", collateral_amount=Decimal(1000), spent=Decimal("998.25"),
        left=Decimal("1.75"), units=Decimal(7), rounds=2, open_children=0, legs=[])
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(gateway, "/user-data")) as user:
        assert (await login(user, c))["result"]["authenticated"] is True
        await asyncio.sleep(1)  # the report reader is positioned at the end of the topics
        for topic, event in (("algo.events", twap), ("index.events", index)):
            await produce(gateway["bootstrap"], gateway["prefix"] + topic, [(b"C", CODEC.encode(event), {})])
        pushed = [await user.receive_str(timeout=20) for _ in range(2)]
    by_id = {json.loads(p)["data"]["order_id"]: json.loads(p, parse_float=Decimal)["data"] for p in pushed}
    assert {k: by_id["BTC-USD-tw"][k] for k in ("status", "kind", "filled_quantity", "average_price")} == {
        "status": "WORKING", "kind": "TWAP", "filled_quantity": Decimal("0.2"),
        "average_price": Decimal("30000.5")}
    assert {k: by_id["INDEX-ix"][k] for k in ("status", "kind", "units", "spent", "left")} == {
        "status": "COMPLETED", "kind": "INDEX", "units": 7, "spent": Decimal("998.25"),
        "left": Decimal("1.75")}
    assert all(json.loads(p)["stream"] == "user_data" for p in pushed)

"""Binance's order-list endpoints on a real gateway (its own process, the real broker and MongoDB): what
each places on order.commands, what it refuses and how, and the lists read back. No matcher runs behind
it: the read model's states are written here where a test needs them, and reports produced by hand."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from motor.motor_asyncio import AsyncIOMotorClient

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
        infra, tmp_path_factory.mktemp("bnlists"), ORDERSTREAM_GATEWAY_BINANCE_RESULT_WAIT_S="0.5"
    ) as gw:
        yield {**gw, "mongo_url": infra.mongo_url}


async def bn(
    gateway: dict[str, Any], method: str, path: str, who: str = "A", **params: Any
) -> tuple[int, Any]:
    """One signed Binance request (every parameter in the query string)."""
    key: Client = gateway[who]
    query = urlencode({**params, "timestamp": int(time.time() * 1000)}, safe="/")  # as aiohttp sends it
    signature = hmac.new(key.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    url = f"{gateway['base']}/api/v3/{path}?{query}&signature={signature}"
    async with aiohttp.ClientSession() as http, http.request(
        method, url, headers={"X-MBX-APIKEY": key.key}
    ) as resp:
        return resp.status, await resp.json()


def sell_oco(cid: str, **kw: Any) -> dict[str, Any]:
    return {
        "symbol": "BTCUSD", "side": "SELL", "quantity": "0.01", "listClientOrderId": cid,
        "aboveType": "LIMIT_MAKER", "abovePrice": "31000",
        "belowType": "STOP_LOSS_LIMIT", "belowStopPrice": "29000", "belowPrice": "28900",
        "belowTimeInForce": "GTC", **kw,
    }


def otoco(cid: str, **kw: Any) -> dict[str, Any]:
    return {
        "symbol": "BTCUSD", "listClientOrderId": cid, "workingType": "LIMIT", "workingSide": "BUY",
        "workingPrice": "30000", "workingQuantity": "0.01", "workingTimeInForce": "GTC",
        "pendingSide": "SELL", "pendingQuantity": "0.01", "pendingAboveType": "LIMIT_MAKER",
        "pendingAbovePrice": "32000", "pendingBelowType": "STOP_LOSS", "pendingBelowStopPrice": "29000", **kw,
    }


async def commands(gateway: dict[str, Any], kind: type[Any], order_id: str) -> list[Any]:
    records = await read(gateway["bootstrap"], gateway["prefix"] + "order.commands", 1000, timeout=5)
    decoded = [CODEC.decode(rec.value) for rec in records]
    return [c for c in decoded if isinstance(c, kind) and c.order_id == order_id]


async def test_exchange_info_allows_oco_and_oto(gateway: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as http, http.get(
        gateway["base"] + "/api/v3/exchangeInfo?symbol=BTCUSD"
    ) as resp:
        info = (await resp.json())["symbols"][0]
    assert (info["ocoAllowed"], info["otoAllowed"]) == (True, True)


async def test_an_oco_is_our_oco_and_reads_back_as_binance_lists_it(gateway: dict[str, Any]) -> None:
    cid = f"oco-{uuid.uuid4().hex[:8]}"
    status, placed = await bn(gateway, "POST", "orderList/oco", **sell_oco(cid))
    assert status == 200, placed
    assert (placed["contingencyType"], placed["listStatusType"], placed["listOrderStatus"]) == (
        "OCO", "EXEC_STARTED", "EXECUTING")
    assert placed["listClientOrderId"] == cid and placed["symbol"] == "BTCUSD"
    list_id = placed["orderListId"]
    assert isinstance(list_id, int) and list_id > 0
    assert [o["clientOrderId"] for o in placed["orders"]] == [f"{cid}/0", f"{cid}/1"]
    reports = placed["orderReports"]
    assert [(x["type"], x["price"], x["stopPrice"], x["status"], x["orderListId"]) for x in reports] == [
        ("LIMIT", "31000.00000000", "0.00000000", "NEW", list_id),
        ("STOP_LOSS_LIMIT", "28900.00000000", "29000.00000000", "NEW", list_id),
    ]
    assert [x["orderId"] for x in reports] == [o["orderId"] for o in placed["orders"]]

    order_id = await order_id_of(gateway, cid)
    [sent] = await commands(gateway, r.SubmitOrderList, order_id)
    assert sent.contingency == r.ContingencyType.OCO and sent.client_order_id == cid
    assert [(o.side, o.order_type, o.quantity, o.price, o.stop_price) for o in sent.orders] == [
        (r.Side.SELL, r.OrderType.LIMIT, Decimal("0.01"), Decimal(31000), None),
        (r.Side.SELL, r.OrderType.STOP_LIMIT, Decimal("0.01"), Decimal(28900), Decimal(29000)),
    ]

    # the same listClientOrderId again is the same list (our idempotency)
    status, again = await bn(gateway, "POST", "orderList/oco", **sell_oco(cid))
    assert status == 200 and again["orderListId"] == list_id

    # read back by either id, each order by its own ids, in allOrders and allOrderList
    for query in ({"orderListId": list_id}, {"origClientOrderId": cid}):
        status, got = await bn(gateway, "GET", "orderList", **query)
        assert status == 200 and got == {k: v for k, v in placed.items() if k != "orderReports"}
    status, leg = await bn(gateway, "GET", "order", symbol="BTCUSD", origClientOrderId=f"{cid}/1")
    assert status == 200, leg
    assert (leg["orderListId"], leg["type"]) == (list_id, "STOP_LOSS_LIMIT")
    status, same = await bn(gateway, "GET", "order", symbol="BTCUSD", orderId=leg["orderId"])
    assert status == 200 and same["clientOrderId"] == f"{cid}/1"
    status, none = await bn(gateway, "GET", "order", symbol="BTCUSD", origClientOrderId=cid)
    assert (status, none["code"]) == (400, -2013)  # the list's own client id names no order
    status, orders = await bn(gateway, "GET", "allOrders", symbol="BTCUSD")
    mine = [o for o in orders if o["orderListId"] == list_id]
    assert [o["clientOrderId"] for o in mine] == [f"{cid}/0", f"{cid}/1"]
    status, lists = await bn(gateway, "GET", "allOrderList")
    assert status == 200 and list_id in [x["orderListId"] for x in lists]
    status, lists = await bn(gateway, "GET", "allOrderList", fromId=list_id)
    assert status == 200 and lists[0]["orderListId"] == list_id
    status, other = await bn(gateway, "GET", "orderList", who="B", orderListId=list_id)
    assert (status, other["code"]) == (400, -2013)

    # its states as the read model will hold them: open, then one leg filled and the other cancelled
    states = AsyncIOMotorClient(gateway["mongo_url"])[gateway["database"]]["trader_orders"]
    await states.insert_many([state(f"{order_id}/0", f"{cid}/0", "ACCEPTED"),
                              state(f"{order_id}/1", f"{cid}/1", "ACCEPTED", "STOP_LIMIT")])
    status, open_lists = await bn(gateway, "GET", "openOrderList")
    assert status == 200 and [x["orderListId"] for x in open_lists] == [list_id]
    await states.update_one({"_id": f"{order_id}/0"}, {"$set": {"status": "FILLED", "filled_quantity": "0.01",
                                                             "average_price": "31000"}})
    await states.update_one({"_id": f"{order_id}/1"}, {"$set": {"status": "CANCELED",
                                                             "reason": "LINKED_ORDER_EXECUTED"}})
    status, done = await bn(gateway, "GET", "orderList", orderListId=list_id)
    assert (done["listStatusType"], done["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
    status, open_lists = await bn(gateway, "GET", "openOrderList")
    assert open_lists == []
    status, refused = await bn(gateway, "DELETE", "orderList", symbol="BTCUSD", orderListId=list_id)
    assert (status, refused["code"]) == (400, -2011)


def state(order_id: str, cid: str, status: str, kind: str = "LIMIT") -> dict[str, Any]:
    """An order's document in the read model (trader_orders), as the collector writes it."""
    return {"_id": order_id, "account_id": "A", "client_order_id": cid, "symbol": "BTC-USD", "status": status,
            "side": "SELL", "order_type": kind, "quantity": "0.01", "filled_quantity": "0",
            "ts_ns": time.time_ns()}


async def order_id_of(gateway: dict[str, Any], cid: str) -> str:
    orders = AsyncIOMotorClient(gateway["mongo_url"])[gateway["order_database"]]["gateway_orders"]
    doc = await orders.find_one({"_id": f"A|{cid}"})
    assert doc is not None
    return str(doc["order_id"])


async def test_the_deprecated_oco_and_cancelling_a_list(gateway: dict[str, Any]) -> None:
    cid = f"old-{uuid.uuid4().hex[:8]}"
    status, placed = await bn(
        gateway, "POST", "order/oco", symbol="BTCUSD", side="BUY", quantity="0.02", price="29000",
        stopPrice="31000", stopLimitPrice="31100", stopLimitTimeInForce="GTC", listClientOrderId=cid,
    )
    assert status == 200, placed
    order_id = await order_id_of(gateway, cid)
    [sent] = await commands(gateway, r.SubmitOrderList, order_id)
    assert [(o.side, o.order_type, o.price, o.stop_price) for o in sent.orders] == [
        (r.Side.BUY, r.OrderType.LIMIT, Decimal(29000), None),
        (r.Side.BUY, r.OrderType.STOP_LIMIT, Decimal(31100), Decimal(31000)),
    ]
    status, gone = await bn(
        gateway, "DELETE", "orderList", symbol="BTCUSD", listClientOrderId=cid, newClientOrderId="bye-1"
    )
    assert status == 200, gone
    assert gone["orderListId"] == placed["orderListId"] and len(gone["orderReports"]) == 2
    assert {x["origClientOrderId"] for x in gone["orderReports"]} == {f"{cid}/0", f"{cid}/1"}
    assert {x["clientOrderId"] for x in gone["orderReports"]} == {"bye-1"}
    [cancel] = await commands(gateway, r.CancelOrder, order_id)  # the list id: every open order of it
    assert cancel.client_order_id == cid


async def test_an_otoco_is_our_bracket_and_an_oto_is_refused(gateway: dict[str, Any]) -> None:
    cid = f"otoco-{uuid.uuid4().hex[:8]}"
    status, placed = await bn(gateway, "POST", "orderList/otoco", **otoco(cid))
    assert status == 200, placed
    assert placed["contingencyType"] == "OTO" and len(placed["orders"]) == 3
    assert [(x["side"], x["type"], x["status"]) for x in placed["orderReports"]] == [
        ("BUY", "LIMIT", "NEW"), ("SELL", "LIMIT", "PENDING_NEW"), ("SELL", "STOP_LOSS", "PENDING_NEW")]
    [sent] = await commands(gateway, r.SubmitOrderList, await order_id_of(gateway, cid))
    assert sent.contingency == r.ContingencyType.BRACKET
    assert [(o.side, o.order_type, o.price, o.stop_price) for o in sent.orders] == [
        (r.Side.BUY, r.OrderType.LIMIT, Decimal(30000), None),
        (r.Side.SELL, r.OrderType.LIMIT, Decimal(32000), None),
        (r.Side.SELL, r.OrderType.STOP_MARKET, None, Decimal(29000)),
    ]
    status, refused = await bn(gateway, "POST", "orderList/oto", symbol="BTCUSD")
    assert (status, refused["code"]) == (400, -1020) and "orderList/otoco" in refused["msg"]


@pytest.mark.parametrize(
    ("path", "params", "code", "named"),
    [
        ("orderList/oco", sell_oco("e1", aboveType=""), -1102, "'aboveType'"),
        ("orderList/oco", sell_oco("e2", aboveType="LIMIT"), -1116, "orderType"),
        ("orderList/oco", sell_oco("e3", aboveType="TAKE_PROFIT_LIMIT"), -1014, "aboveType"),
        ("orderList/oco", sell_oco("e4", belowStopPrice="31500", belowPrice="31400"), -2010,
         "belowStopPrice"),
        ("orderList/oco", sell_oco("e5", aboveClientOrderId="mine"), -1106, "'aboveClientOrderId'"),
        ("orderList/oco", sell_oco("e6", abovePrice="31000.3"), -1013, "PRICE_FILTER"),
        ("orderList/oco", sell_oco("e7", belowTimeInForce="IOC"), -1014, "belowTimeInForce"),
        ("orderList/oco", sell_oco("e8", belowPrice=""), -1102, "'belowPrice'"),
        ("orderList/oco", sell_oco("e9", belowType="STOP_LOSS"), -1106, "'belowPrice'"),
        ("orderList/oco", {**sell_oco("e10", side="BUY"), "aboveType": "STOP_LOSS", "abovePrice": "",
                           "aboveStopPrice": "31000", "belowType": "LIMIT_MAKER", "belowPrice": "29000",
                           "belowStopPrice": ""}, -1014, "cannot be funded"),
        ("orderList/otoco", otoco("e11", pendingSide="BUY"), -1014, "pendingSide"),
        ("orderList/otoco", otoco("e12", pendingQuantity="0.02"), -1014, "pendingQuantity"),
        ("orderList/otoco", otoco("e13", pendingAbovePrice="29500"), -2010, "'pendingAbovePrice'"),
        ("orderList/otoco", otoco("e14", workingTimeInForce=""), -1102, "'workingTimeInForce'"),
        ("order/oco", {"symbol": "BTCUSD", "side": "SELL", "quantity": "0.01", "price": "31000"}, -1102,
         "'stopPrice'"),
    ],
)
async def test_refusals_are_binance_codes_naming_the_parameter(
    gateway: dict[str, Any], path: str, params: dict[str, Any], code: int, named: str
) -> None:
    status, answer = await bn(gateway, "POST", path, **{k: v for k, v in params.items() if v != ""})
    assert (status, answer["code"]) == (400, code), answer
    assert named in answer["msg"]


async def test_a_list_orders_reports_carry_its_order_list_id_on_the_user_stream(
    gateway: dict[str, Any],
) -> None:
    cid = f"g-{uuid.uuid4().hex[:8]}"
    status, placed = await bn(gateway, "POST", "orderList/oco", **sell_oco(cid))
    assert status == 200
    order_id = await order_id_of(gateway, cid)
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway["base"] + "/api/v3/userDataStream",
                             headers={"X-MBX-APIKEY": gateway["A"].key}) as resp:
            listen_key = (await resp.json())["listenKey"]
        async with http.ws_connect(f"{gateway['base']}/ws/{listen_key}") as ws:
            await asyncio.sleep(1)  # the report reader is positioned at the end of the topic
            report = r.ExecutionReport(
                event_id=f"rep-{order_id}", ts_event=time.time_ns(), account_id="A", order_id=f"{order_id}/1",
                client_order_id=f"{cid}/1", symbol="BTC-USD", sequence=1, status="ACCEPTED", side="SELL",
                order_type="STOP_LIMIT", quantity=Decimal("0.01"), price=Decimal(28900),
                filled_quantity=Decimal(0), remaining_quantity=Decimal("0.01"), fees=Decimal(0),
            )
            await produce(gateway["bootstrap"], gateway["prefix"] + "execution.reports",
                          [(b"A", CODEC.encode(report), {})])
            pushed = await ws.receive_json(timeout=15)
    assert (pushed["e"], pushed["c"], pushed["g"], pushed["o"], pushed["P"]) == (
        "executionReport", f"{cid}/1", placed["orderListId"], "STOP_LOSS_LIMIT", "29000.00000000")
    assert pushed["i"] == placed["orders"][1]["orderId"]

"""The Binance-compatible API driven by the real clients, unchanged: CCXT's `binance` and python-binance,
pointed at the gateway of a whole platform (`orderstream up`). Each test prints what the clients sent and
got (the transcript of the closing note)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest
from binance import AsyncClient, BinanceSocketManager
from binance.client import Client
from binance.exceptions import BinanceAPIException

from tests.kafka_tools import eventually

pytestmark = pytest.mark.integration

# A small order bucket, so that the rate-limit test (the module's last) reaches it quickly; the other
# tests place a few orders each.
PLATFORM_ENV = {"ORDERSTREAM_GATEWAY_ORDERS_PER_S": "2", "ORDERSTREAM_GATEWAY_ORDERS_BURST": "20"}
TRANSCRIPT: list[str] = []


class Recorded(ccxt.binance):  # type: ignore[misc]
    """CCXT's binance, every HTTP exchange written to the transcript."""

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        line = f"{method} {url}" + (f"  body={body}" if body else "")
        try:
            answer = await super().fetch(url, method, headers, body)
        except Exception as exc:
            TRANSCRIPT.append(f"> {line}\n< {type(exc).__name__}: {exc}"[:600])
            raise
        TRANSCRIPT.append(f"> {line}\n< {json.dumps(answer)[:400]}")
        return answer


def ccxt_client(base: str, key: str, secret: str) -> Any:
    """CCXT's binance at Orderstream: the spot API's URLs, spot markets only, no sapi calls."""
    ex = Recorded(
        {
            "apiKey": key,
            "secret": secret,
            "enableRateLimit": False,
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
            },
        }
    )
    for api in ("public", "private"):
        ex.urls["api"][api] = f"{base}/api/v3"
    return ex


@pytest.fixture(scope="module")
async def traders(platform: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    creds = platform["creds"]["accounts"]
    clients = {
        w: ccxt_client(platform["base"], creds[w]["key_id"], creds[w]["secret"]) for w in ("alice", "bob")
    }
    try:
        for c in clients.values():
            await c.load_markets()
        yield clients
    finally:
        for c in clients.values():
            await c.close()
        print("\n--- CCXT transcript ---\n" + "\n".join(TRANSCRIPT))


async def until(check: Any, what: str, timeout: float = 60) -> Any:
    """Poll `check()` (async, a signed request each time: every 0.5 s) until it gives something true."""
    return await eventually(what, check, timeout, interval=0.5)


def totals(balance: dict[str, Any]) -> dict[str, D]:
    return {a: D(str(v)) for a, v in balance["total"].items()}


async def test_ccxt_markets_and_public_data(traders: dict[str, Any]) -> None:
    alice = traders["alice"]
    market = alice.market("BTC/USD")
    assert (market["id"], market["spot"], market["active"]) == ("BTCUSD", True, True)
    assert (market["precision"]["price"], market["precision"]["amount"]) == (0.5, 0.0001)
    assert (market["limits"]["amount"]["min"], market["limits"]["cost"]["min"]) == (0.0001, 1.0)
    assert set(alice.markets) >= {"BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD"}
    assert (await alice.fetch_time()) == pytest.approx(time.time() * 1000, abs=5000)


async def test_ccxt_two_accounts_cross_and_see_the_trade_and_exact_balances(traders: dict[str, Any]) -> None:
    alice, bob = traders["alice"], traders["bob"]
    before = {w: totals(await c.fetch_balance()) for w, c in traders.items()}
    sell = await alice.create_order("BTC/USD", "limit", "sell", 0.5, 31000)
    assert (sell["status"], sell["filled"], sell["type"], sell["side"]) == ("open", 0.0, "limit", "sell")
    book = await until(lambda: _book_with(alice, "BTC/USD", 31000.0), "alice's ask in the order book")
    assert [31000.0, 0.5] in book["asks"]
    buy = await bob.create_order("BTC/USD", "limit", "buy", 0.5, 31000)
    assert (buy["status"], buy["filled"], buy["average"]) == ("closed", 0.5, 31000.0)
    assert buy["trades"] and buy["trades"][0]["price"] == 31000.0 and buy["fee"]["cost"] == 31.0
    got = await until(lambda: _closed(alice, sell["id"]), "alice's sell filled in the read model")
    assert (got["filled"], got["average"], got["cost"]) == (0.5, 31000.0, 15500.0)

    # each account's fills reach the read model on its own partition: wait for both, not only alice's
    mine = {w: await until(lambda c=c: c.fetch_my_trades("BTC/USD"), f"{w}'s trade in the read model")
            for w, c in traders.items()}
    assert [
        (t["side"], t["price"], t["amount"], t["takerOrMaker"], t["fee"]["cost"]) for t in mine["alice"]
    ] == [("sell", 31000.0, 0.5, "maker", 15.5)]
    assert [
        (t["side"], t["price"], t["amount"], t["takerOrMaker"], t["fee"]["cost"]) for t in mine["bob"]
    ] == [("buy", 31000.0, 0.5, "taker", 31.0)]
    assert mine["alice"][0]["id"] == mine["bob"][0]["id"] and mine["alice"][0]["order"] == sell["id"]

    want = {
        "alice": {
            "BTC": before["alice"]["BTC"] - D("0.5"),
            "USD": before["alice"]["USD"] + D("15500") - D("15.5"),
        },
        "bob": {"BTC": before["bob"]["BTC"] + D("0.5"), "USD": before["bob"]["USD"] - D("15500") - D("31")},
    }

    async def settled() -> bool:
        now = {w: totals(await c.fetch_balance()) for w, c in traders.items()}
        return all(now[w][a] == v for w in want for a, v in want[w].items())

    await until(settled, f"balances {want}")

    trades = await until(lambda: alice.fetch_trades("BTC/USD"), "the trade in GET trades")
    assert (trades[-1]["price"], trades[-1]["amount"], trades[-1]["side"]) == (31000.0, 0.5, "buy")
    candles = await until(lambda: alice.fetch_ohlcv("BTC/USD", "1m"), "a 1m candle")
    assert candles[-1][4] == 31000.0 and candles[-1][5] >= 0.5
    ticker = await until(lambda: _ticker_at(alice, 31000.0), "the ticker's last price")
    assert ticker["symbol"] == "BTC/USD" and ticker["baseVolume"] >= 0.5


async def _book_with(ex: Any, symbol: str, price: float) -> dict[str, Any] | None:
    book = await ex.fetch_order_book(symbol)
    return book if any(level[0] == price for level in book["asks"]) else None


async def _closed(ex: Any, order_id: str) -> dict[str, Any] | None:
    order = await ex.fetch_order(order_id, "BTC/USD")
    return order if order["status"] == "closed" else None


async def _ticker_at(ex: Any, price: float) -> dict[str, Any] | None:
    ticker = await ex.fetch_ticker("BTC/USD")
    return ticker if ticker["last"] == price else None


async def test_ccxt_market_and_stop_limit_orders_open_orders_and_cancel(traders: dict[str, Any]) -> None:
    alice, bob = traders["alice"], traders["bob"]
    await bob.create_order("ETH/USD", "limit", "sell", 0.2, 2000)
    await until(lambda: _eth_ask(alice), "bob's ETH ask in the book")
    bought = await alice.create_order("ETH/USD", "market", "buy", 0.1)
    assert (bought["status"], bought["filled"], bought["average"]) == ("closed", 0.1, 2000.0)
    spent = await alice.create_order("ETH/USD", "market", "buy", None, params={"quoteOrderQty": "200"})
    assert (spent["status"], spent["filled"], spent["cost"]) == ("closed", 0.1, 200.0)

    stop = await alice.create_order("BTC/USD", "limit", "sell", 0.01, 29000, {"stopPrice": 29500})
    assert (stop["type"], stop["triggerPrice"], stop["status"]) == ("limit", 29500.0, "open")
    assert (stop["info"]["type"]) == "STOP_LOSS_LIMIT"
    open_ = await until(lambda: _open_ids(alice, stop["id"]), "the stop order among the open orders")
    assert stop["id"] in open_
    canceled = await alice.cancel_order(stop["id"], "BTC/USD")
    assert canceled["status"] == "canceled"
    assert (await until(lambda: _canceled(alice, stop["id"]), "the stop canceled"))["status"] == "canceled"


async def _eth_ask(ex: Any) -> bool:
    return bool((await ex.fetch_order_book("ETH/USD"))["asks"])


async def _open_ids(ex: Any, order_id: str) -> list[str]:
    ids = [o["id"] for o in await ex.fetch_open_orders("BTC/USD")]
    return ids if order_id in ids else []


async def _canceled(ex: Any, order_id: str) -> dict[str, Any] | None:
    order = await ex.fetch_order(order_id, "BTC/USD")
    return order if order["status"] == "canceled" else None


async def test_ccxt_maps_each_refusal_to_its_exception_class(
    platform: dict[str, Any], traders: dict[str, Any]
) -> None:
    alice = traders["alice"]
    creds = platform["creds"]["accounts"]["alice"]
    wrong = ccxt_client(platform["base"], creds["key_id"], "not-the-secret")
    stale = ccxt_client(platform["base"], creds["key_id"], creds["secret"])
    stale.nonce = lambda: int(time.time() * 1000) - 120_000
    try:
        await wrong.load_markets()
        with pytest.raises(ccxt.AuthenticationError, match="-1022"):
            await wrong.fetch_balance()
        await stale.load_markets()
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await stale.fetch_balance()
    finally:
        await wrong.close()
        await stale.close()
    with pytest.raises(ccxt.InsufficientFunds):
        await alice.create_order("BTC/USD", "limit", "sell", 5000, 31000)
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):  # past CCXT's own rounding: the raw endpoint
        await alice.private_post_order(
            {
                "symbol": "BTCUSD",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.00005",
                "price": "1000",
            }
        )
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        await alice.private_post_order(
            {
                "symbol": "BTCUSD",
                "side": "BUY",
                "type": "LIMIT",
                "timeInForce": "GTC",
                "quantity": "0.01",
                "price": "1000.3",
            }
        )
    ask = await alice.create_order("ETH/USD", "limit", "sell", 0.01, 2600)
    await until(lambda: _eth_ask(alice), "alice's ETH ask in the book")
    with pytest.raises(ccxt.OrderImmediatelyFillable):  # a LIMIT_MAKER that would take alice's ask
        await traders["bob"].create_order("ETH/USD", "limit", "buy", 0.01, 2600, {"postOnly": True})
    await alice.cancel_order(ask["id"], "ETH/USD")
    with pytest.raises(ccxt.OrderNotFound):
        await alice.fetch_order("1234567890123", "BTC/USD")
    with pytest.raises(ccxt.OrderNotFound):
        await alice.cancel_order("1234567890123", "BTC/USD")
    with pytest.raises(ccxt.BadSymbol):
        await alice.public_get_depth({"symbol": "NOPEUSD"})
    with pytest.raises(ccxt.ExchangeError, match="-1020"):  # an OTO: one pending order, no list of ours
        await alice.private_post_orderlist_oto({"symbol": "BTCUSD", "workingType": "LIMIT"})


async def test_order_lists_oco_one_leg_fills_the_other_is_cancelled_and_lists_are_cancelled(
    platform: dict[str, Any], traders: dict[str, Any]
) -> None:
    """python-binance places an OCO around the last price; bob's buy fills its limit leg and the matcher
    cancels its stop leg, as CCXT reads back; a second OCO (CCXT) and an OTOCO (our bracket: its exits
    placed once the working order filled) are cancelled as lists."""
    x_alice, x_bob = traders["alice"], traders["bob"]
    creds = platform["creds"]["accounts"]

    class Local(AsyncClient):  # type: ignore[misc]
        API_URL = platform["base"] + "/api"

    alice = await Local.create(creds["alice"]["key_id"], creds["alice"]["secret"])
    log: list[str] = []
    try:
        await x_bob.create_order("BTC/USD", "limit", "sell", 0.01, 32000)  # a last price of 32000
        await until(lambda: _book_with(x_alice, "BTC/USD", 32000.0), "bob's ask in the book")
        await x_alice.create_order("BTC/USD", "limit", "buy", 0.01, 32000)
        await until(lambda: _ticker_at(x_alice, 32000.0), "the last price 32000")

        oco = await alice.create_oco_order(
            symbol="BTCUSD", side="SELL", quantity="0.01", aboveType="LIMIT_MAKER", abovePrice="33000",
            belowType="STOP_LOSS_LIMIT", belowStopPrice="31000", belowPrice="30900", belowTimeInForce="GTC",
        )
        log.append(f"create_oco_order(SELL 0.01 BTCUSD 33000 / 31000) -> {json.dumps(oco)}")
        assert oco["contingencyType"] == "OCO" and oco["listClientOrderId"].startswith("x-")
        assert [(x["type"], x["status"]) for x in oco["orderReports"]] == [
            ("LIMIT", "NEW"), ("STOP_LOSS_LIMIT", "NEW")]
        list_id, (limit_leg, stop_leg) = oco["orderListId"], (o["orderId"] for o in oco["orders"])
        await until(lambda: _open_list(alice, list_id), "the OCO among python-binance's open OCO orders")
        bought = await x_bob.create_order("BTC/USD", "limit", "buy", 0.01, 33000)
        assert (bought["status"], bought["average"]) == ("closed", 33000.0)
        done = await until(lambda: _list_done(x_alice, list_id), "the OCO all done")
        assert (done["contingencyType"], done["listOrderStatus"]) == ("OCO", "ALL_DONE")
        filled = await x_alice.fetch_order(str(limit_leg), "BTC/USD")
        gone = await x_alice.fetch_order(str(stop_leg), "BTC/USD")
        assert (filled["status"], filled["filled"]) == ("closed", 0.01)
        assert (gone["status"], gone["filled"]) == ("canceled", 0.0)
        assert filled["info"]["orderListId"] == gone["info"]["orderListId"] == list_id
        trades = await until(lambda: _trades_of(x_alice, str(limit_leg)), "the OCO's fill in myTrades")
        assert trades[0]["info"]["orderListId"] == list_id

        await until(lambda: _ticker_at(x_alice, 33000.0), "the last price 33000")
        second = await x_alice.private_post_orderlist_oco({
            "symbol": "BTCUSD", "side": "SELL", "quantity": "0.01", "aboveType": "LIMIT_MAKER",
            "abovePrice": "34000", "belowType": "STOP_LOSS", "belowStopPrice": "32000",
        })
        await until(lambda: _open_list(alice, second["orderListId"]), "the second OCO open")
        canceled = await x_alice.private_delete_orderlist(
            {"symbol": "BTCUSD", "orderListId": second["orderListId"]}
        )
        assert (canceled["listStatusType"], canceled["listOrderStatus"]) == ("ALL_DONE", "ALL_DONE")
        assert [x["status"] for x in canceled["orderReports"]] == ["CANCELED", "CANCELED"]

        bracket = await alice.v3_post_order_list_otoco(
            symbol="BTCUSD", workingType="LIMIT", workingSide="BUY", workingPrice="32500",
            workingQuantity="0.01", workingTimeInForce="GTC", pendingSide="SELL", pendingQuantity="0.01",
            pendingAboveType="LIMIT_MAKER", pendingAbovePrice="34000", pendingBelowType="STOP_LOSS",
            pendingBelowStopPrice="31000",
        )
        log.append(f"v3_post_order_list_otoco(BUY 0.01 @32500, exits 34000 / 31000) -> {json.dumps(bracket)}")
        assert bracket["contingencyType"] == "OTO"
        assert [x["status"] for x in bracket["orderReports"]] == ["NEW", "PENDING_NEW", "PENDING_NEW"]
        await until(lambda: _book_with_bid(x_alice, 32500.0), "the working order in the book")
        await x_bob.create_order("BTC/USD", "limit", "sell", 0.01, 32500)
        placed = await until(lambda: _exits_placed(alice, bracket["orderListId"]), "the exits placed")
        assert placed["listStatusType"] == "EXEC_STARTED"
        every = await alice.v3_get_all_order_list()
        assert {list_id, second["orderListId"], bracket["orderListId"]} <= {x["orderListId"] for x in every}
        ended = await alice.v3_delete_order_list(symbol="BTCUSD", orderListId=bracket["orderListId"])
        log.append(f"v3_delete_order_list -> {json.dumps(ended)}")
        assert [x["status"] for x in ended["orderReports"]] == ["FILLED", "CANCELED", "CANCELED"]
        assert ended["listOrderStatus"] == "ALL_DONE"
    finally:
        await alice.close_connection()
        print("\n--- python-binance order list transcript ---\n" + "\n".join(log))


async def _open_list(client: Any, list_id: int) -> bool:
    return list_id in [x["orderListId"] for x in await client.get_open_oco_orders()]


async def _list_done(ex: Any, list_id: int) -> dict[str, Any] | None:
    got: dict[str, Any] = await ex.private_get_orderlist({"orderListId": list_id})
    return got if got["listStatusType"] == "ALL_DONE" else None


async def _trades_of(ex: Any, order_id: str) -> list[dict[str, Any]]:
    return [t for t in await ex.fetch_my_trades("BTC/USD") if t["order"] == order_id]


async def _book_with_bid(ex: Any, price: float) -> bool:
    return any(level[0] == price for level in (await ex.fetch_order_book("BTC/USD"))["bids"])


async def _exits_placed(client: Any, list_id: int) -> dict[str, Any] | None:
    got: dict[str, Any] = await client.v3_get_order_list(orderListId=list_id)
    states = [
        (await client.get_order(symbol="BTCUSD", orderId=o["orderId"]))["status"] for o in got["orders"]
    ]
    return got if states == ["FILLED", "NEW", "NEW"] else None


def test_python_binance_client_trades_and_reads(platform: dict[str, Any]) -> None:
    """python-binance's (sync) Client at Orderstream: its API_URL, unchanged otherwise."""
    creds = platform["creds"]["accounts"]

    class Local(Client):  # type: ignore[misc]
        API_URL = platform["base"] + "/api"

    alice = Local(creds["alice"]["key_id"], creds["alice"]["secret"])
    bob = Local(creds["bob"]["key_id"], creds["bob"]["secret"])
    log = []
    info = alice.get_symbol_info("ETHUSD")
    log.append(f"get_symbol_info(ETHUSD) -> {json.dumps(info)[:300]}")
    assert info["status"] == "TRADING" and info["filters"][0]["tickSize"] == "0.05000000"
    sell = alice.create_order(
        symbol="ETHUSD",
        side="SELL",
        type="LIMIT",
        timeInForce="GTC",
        quantity="2",
        price="2500.00",
        newClientOrderId="pb-sell-1",
    )
    log.append(f"create_order(SELL 2 ETHUSD @2500) -> {json.dumps(sell)}")
    assert sell["clientOrderId"] == "pb-sell-1" and isinstance(sell["orderId"], int)
    got = alice.get_order(symbol="ETHUSD", orderId=sell["orderId"])
    assert got["clientOrderId"] == "pb-sell-1" and got["origQty"] == "2.00000000"
    same = alice.get_order(symbol="ETHUSD", origClientOrderId="pb-sell-1")
    assert same["orderId"] == sell["orderId"]
    canceled = alice.cancel_order(symbol="ETHUSD", orderId=sell["orderId"])
    log.append(f"cancel_order -> {json.dumps(canceled)}")
    assert canceled["status"] == "CANCELED" and canceled["origClientOrderId"] == "pb-sell-1"
    try:
        alice.get_order(symbol="ETHUSD", orderId=12345)
    except BinanceAPIException as e:
        log.append(f"get_order(unknown) -> {e.status_code} {e.code} {e.message}")
        assert (e.status_code, e.code) == (400, -2013)
    account = bob.get_account()
    assert {b["asset"] for b in account["balances"]} >= {"USD", "ETH"}
    log.append(f"get_account -> {json.dumps(account)[:300]}")
    print("\n--- python-binance transcript ---\n" + "\n".join(log))


async def test_python_binance_streams_user_data_and_depth(platform: dict[str, Any]) -> None:
    """python-binance's BinanceSocketManager at Orderstream's stream URL: a partial depth stream, and the
    user data stream by listenKey (a combined stream of the key, which Binance serves too)."""
    creds = platform["creds"]["accounts"]
    base = platform["base"]

    class Local(AsyncClient):  # type: ignore[misc]
        API_URL = base + "/api"

    alice = await Local.create(creds["alice"]["key_id"], creds["alice"]["secret"])
    bob = await Local.create(creds["bob"]["key_id"], creds["bob"]["secret"])
    log: list[str] = []
    try:
        manager = BinanceSocketManager(alice)
        manager.STREAM_URL = base.replace("http", "ws", 1) + "/"
        listen_key = await alice.stream_get_listen_key()
        assert await alice.stream_get_listen_key() == listen_key  # one alive per account, as on Binance
        async with (
            manager.depth_socket("ETHUSD", depth=BinanceSocketManager.WEBSOCKET_DEPTH_5) as depth,
            manager.multiplex_socket([listen_key]) as user,
        ):
            await asyncio.sleep(1)
            sell = await alice.create_order(
                symbol="ETHUSD", side="SELL", type="LIMIT", timeInForce="GTC", quantity="0.5", price="2400.00"
            )
            book = await _first(depth, lambda m: ["2400.00000000", "0.50000000"] in m.get("asks", []), log)
            assert book["lastUpdateId"] > 0
            await bob.create_order(
                symbol="ETHUSD", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.5", price="2400.00"
            )
            filled = await _first(
                user, lambda m: m["data"].get("e") == "executionReport" and m["data"]["X"] == "FILLED", log
            )
            report = filled["data"]
            assert (report["i"], report["s"], report["l"], report["L"], report["z"], report["m"]) == (
                sell["orderId"],
                "ETHUSD",
                "0.50000000",
                "2400.00000000",
                "0.50000000",
                True,
            )
            assert report["n"] == "1.20000000" and report["N"] == "USD"
            position = await _first(user, lambda m: m["data"].get("e") == "outboundAccountPosition", log)
            assert position["stream"] == listen_key and position["data"]["B"][0]["a"] in ("ETH", "USD")
        await alice.stream_close(listen_key)
    finally:
        await alice.close_connection()
        await bob.close_connection()
        print("\n--- python-binance stream transcript ---\n" + "\n".join(log))


async def _first(socket: Any, want: Any, log: list[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = await asyncio.wait_for(socket.recv(), deadline - time.monotonic())
        log.append(json.dumps(msg)[:300])
        if want(msg):
            return dict(msg)
    raise AssertionError("no such message")


async def test_ccxt_order_rate_limit_is_binance_429(traders: dict[str, Any]) -> None:
    """Over the key's order bucket (20 here): -1015 with 429, Retry-After and X-MBX-USED-WEIGHT-1M. CCXT
    raises DDoSProtection for any 429 before it reads the code (its RateLimitExceeded is for -1003/-1015
    bodies on other statuses), so that is the class a CCXT user meets, as on Binance."""
    bob = traders["bob"]

    async def one() -> Any:
        return await bob.create_order("BTC/USD", "limit", "buy", 0.001, 1000, {"postOnly": True})

    answers = await asyncio.gather(*(one() for _ in range(40)), return_exceptions=True)
    refused = [a for a in answers if isinstance(a, Exception)]
    assert refused and all(isinstance(e, ccxt.DDoSProtection) and "-1015" in str(e) for e in refused), refused
    assert len(answers) - len(refused) >= 19
    status, headers, body = 0, {}, {}
    async with aiohttp.ClientSession() as http:  # the same, raw: Binance's headers on the refusal
        for _ in range(40):
            stamp = int(time.time() * 1000)
            query = f"symbol=BTCUSD&side=BUY&type=LIMIT_MAKER&quantity=0.001&price=1000&timestamp={stamp}"
            signed = (
                query
                + "&signature="
                + hmac.new(bob.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
            )
            async with http.post(
                f"{bob.urls['api']['private']}/order",
                data=signed,
                headers={"X-MBX-APIKEY": bob.apiKey, "Content-Type": "application/x-www-form-urlencoded"},
            ) as resp:
                status, headers, body = resp.status, dict(resp.headers), await resp.json()
            if status == 429:
                break
    assert (status, body["code"]) == (429, -1015)
    assert int(headers["Retry-After"]) >= 1 and int(headers["X-MBX-USED-WEIGHT-1M"]) > 0
    TRANSCRIPT.append(
        f"> POST /api/v3/order (raw)\n< {status} Retry-After={headers['Retry-After']} "
        f"X-MBX-USED-WEIGHT-1M={headers['X-MBX-USED-WEIGHT-1M']} {json.dumps(body)}"
    )
    await asyncio.sleep(3)
    await bob.cancel_all_orders("BTC/USD")


async def placed(ex: Any, side: str) -> bool:
    try:
        await ex.create_order("ETH/USD", "limit", side, 0.2, 2450)
    except ccxt.DDoSProtection:  # the order rate limit: tokens come back at ORDERS_PER_S
        return False
    return True


async def test_market_streams_trade_kline_book_ticker_ticker_and_depth_combined(
    platform: dict[str, Any], traders: dict[str, Any]
) -> None:
    """Binance's combined stream path with five market streams of one symbol; a cross through CCXT
    shows on each, with Binance's event names and fields, decimals as strings."""
    names = ["ethusd@trade", "ethusd@kline_1m", "ethusd@bookTicker", "ethusd@ticker", "ethusd@depth"]
    url = platform["base"].replace("http", "ws", 1) + "/stream?streams=" + "/".join(names)
    seen: dict[str, dict[str, Any]] = {}
    log: list[str] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        await asyncio.sleep(1)
        alice, bob = traders["alice"], traders["bob"]
        for who, side in ((alice, "sell"), (bob, "buy")):  # after the rate-limit test: wait for tokens
            await until(lambda who=who, side=side: placed(who, side), f"a {side} placed", timeout=30)
        deadline = time.monotonic() + 60
        while set(seen) != set(names) and time.monotonic() < deadline:
            frame = await ws.receive_json(timeout=max(0.1, deadline - time.monotonic()))
            log.append(json.dumps(frame)[:200])
            if frame["stream"] == "ethusd@trade" and frame["data"]["p"] != "2450.00000000":
                continue  # a trade of another test
            seen.setdefault(frame["stream"], frame["data"])
    assert set(seen) == set(names), (sorted(seen), log)
    trade = seen["ethusd@trade"]
    assert (trade["e"], trade["s"], trade["q"]) == ("trade", "ETHUSD", "0.20000000")
    kline = seen["ethusd@kline_1m"]
    assert kline["e"] == "kline" and kline["k"]["i"] == "1m" and kline["k"]["s"] == "ETHUSD"
    assert {"u", "s", "b", "B", "a", "A"} <= set(seen["ethusd@bookTicker"])
    assert seen["ethusd@ticker"]["e"] == "24hrTicker" and seen["ethusd@ticker"]["s"] == "ETHUSD"
    depth = seen["ethusd@depth"]
    assert depth["e"] == "depthUpdate" and {"U", "u", "b", "a"} <= set(depth)

"""The whole platform started the way `make up` starts it, driven through the gateway by real clients."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest

from orderstream.client import GatewayClient, Session
from orderstream.ops.platform import SETTINGS
from tests.e2e.conftest import orderstream
from tests.fix_client import FixClient, now

pytestmark = pytest.mark.integration


def client(p: dict[str, Any], who: str) -> GatewayClient:
    c = p["creds"]["accounts"][who]
    return GatewayClient(p["base"], c["key_id"], c["secret"])


async def final_report(session: Session, order_id: str, status: str) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(session.events.get(), 60)
        data = frame.get("data", {})
        if (
            frame.get("type") == "execution_report"
            and data["order_id"] == order_id
            and data["status"] == status
        ):
            return dict(data)


def total(balances: dict[str, Any], asset: str) -> D:
    b = balances[asset]
    return D(b["free"]) + D(b["held"])


async def settled(
    http: aiohttp.ClientSession, clients: dict[str, GatewayClient], want: dict[tuple[str, str], D]
) -> None:
    """Until each (client, asset) balance (free + held, from the read model) is what `want` says: fills
    are settled and written to MongoDB a moment after the fill reports."""
    for _ in range(60):
        after = {w: (await c.ok(http, "GET", "/api/v1/balances"))["balances"] for w, c in clients.items()}
        if all(total(after[w], asset) == v for (w, asset), v in want.items()):
            break
        await asyncio.sleep(0.5)
    assert {k: total(after[k[0]], k[1]) for k in want} == want


async def test_up_starts_six_services_topics_instruments_and_demo_accounts(platform: dict[str, Any]) -> None:
    assert (
        "Orderstream is up." in platform["up"] and f"REST       {platform['base']}/api/v1" in platform["up"]
    )
    assert set(platform["creds"]["accounts"]) == {"alice", "bob"}
    assert oct((platform["run"] / "credentials.json").stat().st_mode & 0o777) == "0o600"
    status = orderstream(platform["env"], "status")
    assert status.returncode == 0, status.stdout
    for service in SETTINGS:
        assert f"  {service}" in status.stdout
    assert sorted(p.name for p in (platform["run"] / "logs").glob("*.log")) == sorted(
        f"{s}.log" for s in SETTINGS
    )
    lag = orderstream(platform["env"], "lag")
    assert lag.returncode == 0 and "collateral" in lag.stdout


async def test_two_traders_cross_through_the_gateway_and_everything_agrees(platform: dict[str, Any]) -> None:
    alice, bob = client(platform, "alice"), client(platform, "bob")
    async with aiohttp.ClientSession() as http:
        before = {
            w: (await c.ok(http, "GET", "/api/v1/balances"))["balances"]
            for w, c in (("a", alice), ("b", bob))
        }
        async with alice.session(http) as sa, bob.session(http) as sb:
            for s in (sa, sb):
                await s.call("subscribe", {"stream": "user"})
            sell = await sa.call(
                "order.place",
                {
                    "client_order_id": f"s-{uuid.uuid4().hex[:6]}",
                    "symbol": "BTC-USD",
                    "side": "SELL",
                    "quantity": "0.5",
                    "price": "31000",
                },
            )
            await final_report(sa, sell["order_id"], "ACCEPTED")
            buy = await sb.call(
                "order.place",
                {
                    "client_order_id": f"b-{uuid.uuid4().hex[:6]}",
                    "symbol": "BTC-USD",
                    "side": "BUY",
                    "quantity": "0.5",
                    "price": "31000",
                },
            )
            a_fill = await final_report(sa, sell["order_id"], "FILLED")
            b_fill = await final_report(sb, buy["order_id"], "FILLED")
        assert (D(a_fill["average_price"]), a_fill["last_liquidity"], D(a_fill["fees"])) == (
            D(31000),
            "MAKER",
            D("15.5"),
        )
        assert (D(b_fill["average_price"]), b_fill["last_liquidity"], D(b_fill["fees"])) == (
            D(31000),
            "TAKER",
            D(31),
        )
        want = {
            ("a", "BTC"): total(before["a"], "BTC") - D("0.5"),
            ("a", "USD"): total(before["a"], "USD") + D(15500) - D("15.5"),
            ("b", "BTC"): total(before["b"], "BTC") + D("0.5"),
            ("b", "USD"): total(before["b"], "USD") - D(15500) - D(31),
        }
        await settled(http, {"a": alice, "b": bob}, want)
        for c, oid in ((alice, sell["order_id"]), (bob, buy["order_id"])):
            for _ in range(60):
                got = await c.ok(http, "GET", f"/api/v1/orders/{oid}")
                if got["state"] and got["state"]["status"] == "FILLED":
                    break
                await asyncio.sleep(0.5)
            assert (got["state"]["status"], D(got["state"]["filled_quantity"])) == ("FILLED", D("0.5"))


async def test_clients_of_the_ordergateway_document_cross_and_see_fills_and_the_book(
    platform: dict[str, Any],
) -> None:
    """Clients written from the OrderGateway design document's section 4 alone: they log in with the
    API secret on /orders, /user-data and /market-data, alice's resting sell is crossed by bob's buy
    (JSON numbers), both see FILLED on /user-data, and /market-data shows the book, then the last trade."""
    ws_base = platform["base"].replace("http", "ws", 1)
    creds = platform["creds"]["accounts"]

    def login(who: str) -> dict[str, Any]:
        c = creds[who]
        return {"method": "auth.login", "params": {"api_key": c["key_id"], "api_secret": c["secret"]}}

    async def until(ws: aiohttp.ClientWebSocketResponse, stream: str, check: Any) -> str:
        while True:
            text = await ws.receive_str(timeout=60)
            frame = json.loads(text, parse_float=D)
            if frame.get("stream") == stream and check(frame["data"]):
                return text

    def place(rid: str, side: str, account: str) -> str:
        return (
            f'{{"method": "order.place", "params": {{"symbol": "BTC-USD", "side": "{side}", "type": "LIMIT", '
            f'"price": 31500.5, "quantity": 0.25, "account_id": "{account}"}}, "id": "{rid}"}}'
        )

    run = uuid.uuid4().hex[:6]
    rest = {"a": client(platform, "alice"), "b": client(platform, "bob")}
    async with aiohttp.ClientSession() as http:
        before = {w: (await c.ok(http, "GET", "/api/v1/balances"))["balances"] for w, c in rest.items()}
        sockets = {name: await http.ws_connect(ws_base + path) for name, path in (
            ("a_orders", "/orders"), ("b_orders", "/orders"), ("a_user", "/user-data"),
            ("b_user", "/user-data"), ("market", "/market-data"))}
        try:
            for name, ws in sockets.items():
                await ws.send_json(login("alice" if name.startswith("a_") or name == "market" else "bob"))
                answer = await until_answer(ws)
                assert answer["result"]["authenticated"] is True, answer
            market = sockets["market"]
            await sockets["a_orders"].send_str(place(f"sell-{run}", "SELL", "alice"))
            sell = (await until_answer(sockets["a_orders"]))["result"]
            assert sell["status"] == "ACCEPTED"
            await until(sockets["a_user"], "user_data",
                        lambda d: d["order_id"] == sell["order_id"] and d["status"] == "ACCEPTED")
            book = await until(market, "market_data",
                               lambda d: d["symbol"] == "BTC-USD" and [D("31500.5"), D("0.25")] in d["asks"])
            assert '[31500.5,0.25]' in book
            await sockets["b_orders"].send_str(place(f"buy-{run}", "BUY", "bob"))
            buy = (await until_answer(sockets["b_orders"]))["result"]
            for who, oid in (("a_user", sell["order_id"]), ("b_user", buy["order_id"])):
                filled = await until(sockets[who], "user_data",
                                     lambda d, oid=oid: d["order_id"] == oid and d["status"] == "FILLED")
                assert '"filled_quantity":0.25' in filled and '"average_price":31500.5' in filled, filled
            traded = await until(market, "market_data",
                                 lambda d: d["symbol"] == "BTC-USD" and d["last_trade"] is not None
                                 and d["last_trade"]["price"] == D("31500.5")
                                 and [D("31500.5"), D("0.25")] not in d["asks"])
            data = json.loads(traded, parse_float=D)["data"]
            assert data["last_trade"]["quantity"] == D("0.25") and data["tick"] > 0, traded
        finally:
            for ws in sockets.values():
                await ws.close()
        notional = D("31500.5") * D("0.25")  # alice is the maker (0.1% fee), bob the taker (0.2%)
        await settled(http, rest, {
            ("a", "BTC"): total(before["a"], "BTC") - D("0.25"),
            ("a", "USD"): total(before["a"], "USD") + notional - notional * D("0.001"),
            ("b", "BTC"): total(before["b"], "BTC") + D("0.25"),
            ("b", "USD"): total(before["b"], "USD") - notional - notional * D("0.002"),
        })


async def until_answer(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The next answer to a request (pushes are skipped)."""
    while True:
        frame: dict[str, Any] = json.loads(await ws.receive_str(timeout=60))
        if "result" in frame or "error" in frame:
            return frame


async def test_an_order_on_the_fix_venue_fills_through_the_gateway_and_the_history_shows_it(
    platform: dict[str, Any],
) -> None:
    """ADA-USD is routed to FIX-EXEC, QuickFIX/J's Executor over FIX 4.4: a buy limit at 0.60 fills
    there at its market price 0.50; the trader pays exactly that plus the taker fee."""
    alice = client(platform, "alice")
    async with aiohttp.ClientSession() as http:
        before = (await alice.ok(http, "GET", "/api/v1/balances"))["balances"]
        async with alice.session(http) as sa:
            await sa.call("subscribe", {"stream": "user"})
            placed = await sa.call("order.place", {
                "client_order_id": f"fix-{uuid.uuid4().hex[:6]}", "symbol": "ADA-USD", "side": "BUY",
                "quantity": "200", "price": "0.6",
            })
            fill = await final_report(sa, placed["order_id"], "FILLED")
        assert (fill["venue"], D(fill["average_price"]), D(fill["filled_quantity"]), D(fill["fees"])) == (
            "FIX-EXEC", D("0.5"), D(200), D("0.2"))
        assert fill["trade_id"].startswith(f"FIX-EXEC-{placed['order_id']}-")
        usd = D(before["USD"]["free"]) + D(before["USD"]["held"]) - D(100) - D("0.2")
        ada = D(before.get("ADA", {}).get("free", "0")) + D(200)
        for _ in range(60):
            after = (await alice.ok(http, "GET", "/api/v1/balances"))["balances"]
            ada_now = D(after.get("ADA", {}).get("free", "0"))
            have = (D(after["USD"]["free"]), D(after["USD"]["held"]), ada_now)
            if have == (usd, D(0), ada):
                break
            await asyncio.sleep(0.5)
        assert (D(after["USD"]["free"]), D(after["USD"]["held"]), D(after["ADA"]["free"])) == (usd, D(0), ada)
        for _ in range(60):
            page = await alice.ok(http, "GET", "/api/v1/history")
            mine = [o for o in page["orders"] if o["order_id"] == placed["order_id"]]
            if mine and mine[0]["status"] == "FILLED":
                break
            await asyncio.sleep(0.5)
        assert (mine[0]["status"], D(mine[0]["filled_quantity"]), mine[0]["symbol"]) == (
            "FILLED", D(200), "ADA-USD")


async def test_the_demo_runs_and_its_end_state_checks_pass(platform: dict[str, Any]) -> None:
    demo = orderstream(
        platform["env"], "demo", "--gateway", platform["base"], "--traders", "3", "--seconds", "6"
    )
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    assert "end-state checks passed" in demo.stdout and " fills" in demo.stdout
    print("\n".join(line for line in demo.stdout.splitlines() if line.startswith(("TWAP ", "end-state"))))
    assert demo.stdout.count("TWAP ") >= 3 and "TWAP parents == their children" in demo.stdout, demo.stdout


async def test_a_gateway_killed_mid_stream_loses_no_order_and_places_none_twice(
    platform: dict[str, Any],
) -> None:
    """REST orders go in while the gateway is killed (kill -9) and restarted by the supervisor; a
    client retries each order whose answer it lost with the same client_order_id. Every order ends
    placed exactly once: one answer per client_order_id, one first report per order."""
    alice = client(platform, "alice")
    run = uuid.uuid4().hex[:6]
    answers: dict[str, dict[str, Any]] = {}

    async def place(http: aiohttp.ClientSession, cid: str) -> None:
        body = {"client_order_id": cid, "symbol": "BTC-USD", "side": "BUY", "quantity": "0.001",
                "price": "1000"}
        for _ in range(600):  # until the answer comes: refused connections while the gateway is down
            try:
                status, _, answer = await alice.call(http, "POST", "/api/v1/orders", body)
                if status == 200:
                    answers[cid] = answer
                    return
                assert status in (429, 503), answer  # busy or not confirmed: send it again
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"{cid} never answered")

    cids = [f"gk{run}-{i}" for i in range(40)]
    async with aiohttp.ClientSession() as http:

        async def held() -> D:
            return D((await alice.ok(http, "GET", "/api/v1/balances"))["balances"]["USD"]["held"])

        held_before = await held()
        pid = json.loads((platform["run"] / "services.json").read_text())["gateway"]["pid"]
        first = [asyncio.create_task(place(http, cid)) for cid in cids[:20]]
        await asyncio.sleep(0.05)
        os.kill(pid, 9)  # some of the first 20 are in flight
        await asyncio.gather(*first, *(place(http, cid) for cid in cids[20:]))
        order_ids = {answers[cid]["order_id"] for cid in cids}
        assert len(order_ids) == len(cids)
        for oid in order_ids:  # each order is known, and resting
            for _ in range(120):
                got = await alice.ok(http, "GET", f"/api/v1/orders/{oid}")
                if got["state"] is not None:
                    break
                await asyncio.sleep(0.5)
            assert got["state"] is not None and got["state"]["status"] == "ACCEPTED", got
        # one hold per order (0.001 x 1000 plus the 0.2% fee): none placed twice
        for _ in range(60):
            if await held() == held_before + len(cids) * D("1.002"):
                break
            await asyncio.sleep(0.5)
        assert await held() == held_before + len(cids) * D("1.002")
        for oid in order_ids:
            await alice.ok(http, "DELETE", f"/api/v1/orders/{oid}")


def is_report(cl_ord_id: str, exec_type: str) -> Any:
    return lambda m: m.msg_type == "8" and m.get(11) == cl_ord_id and m.get(150) == exec_type


async def test_fix_order_entry_trades_and_a_dropped_client_gets_its_reports_by_resend(
    platform: dict[str, Any],
) -> None:
    """A FIX 4.4 client over TCP: logon, place, replace, status, cancel, refusals; then an order
    that trades while its TCP connection is dropped, whose reports come back by ResendRequest."""
    creds = platform["creds"]["accounts"]["alice"]
    fix = FixClient(platform["fix_port"], creds["key_id"])
    await fix.connect()
    refused = await fix.logon("not-the-secret")
    assert refused.msg_type == "5" and "wrong Password" in (refused.get(58) or "")
    fix.next_out = 1
    await fix.connect()
    assert (await fix.logon(creds["secret"])).msg_type == "A"
    t = uuid.uuid4().hex[:6]
    order = [(21, "1"), (55, "BTC-USD"), (54, "1"), (60, now()), (40, "2"), (59, "1")]
    fix.send("D", [(11, f"{t}-1"), *order, (38, "0.01"), (44, "20000")])
    new = await fix.until(is_report(f"{t}-1", "0"))
    assert (new.get(39), new.get(38), new.get(44), new.get(151)) == ("0", "0.01", "20000", "0.01")
    order_id = new.require(37)

    fix.send("G", [(41, f"{t}-1"), (11, f"{t}-2"), *order, (38, "0.02"), (44, "20001")])
    replaced = await fix.until(is_report(f"{t}-2", "5"))
    assert (replaced.get(41), replaced.get(37), replaced.get(38), replaced.get(44)) == (
        f"{t}-1", order_id, "0.02", "20001")
    fix.send("H", [(11, f"{t}-2"), (790, f"{t}-q"), (55, "BTC-USD"), (54, "1")])
    status = await fix.until(lambda m: m.msg_type == "8" and m.get(150) == "I")
    assert (status.get(37), status.get(790)) == (order_id, f"{t}-q")
    fix.send("F", [(41, f"{t}-2"), (11, f"{t}-3"), (55, "BTC-USD"), (54, "1"), (60, now()), (38, "0.02")])
    canceled = await fix.until(is_report(f"{t}-3", "4"))
    assert (canceled.get(41), canceled.get(39), canceled.get(151)) == (f"{t}-2", "4", "0")

    fix.send("F", [(41, f"{t}-404"), (11, f"{t}-4"), (55, "BTC-USD"), (54, "1"), (60, now()), (38, "1")])
    no_such = await fix.until(lambda m: m.msg_type == "9")
    assert (no_such.get(11), no_such.get(102), no_such.get(434)) == (f"{t}-4", "1", "1")
    assert f"no order with ClOrdID {t}-404" in (no_such.get(58) or "")
    bad_side = fix.send("D", [(11, f"{t}-5"), *[(k, "Z" if k == 54 else v) for k, v in order], (38, "1"),
                              (44, "1")])
    reject = await fix.until(lambda m: m.msg_type == "3")
    assert (reject.get(45), reject.get(371), reject.get(373)) == (str(bad_side), "54", "5")
    fix.send("D", [(11, f"{t}-6"), *[(k, "NOPE-USD" if k == 55 else v) for k, v in order], (38, "1"),
                   (44, "1")])
    unknown = await fix.until(is_report(f"{t}-6", "8"))
    assert "NOPE-USD" in (unknown.get(58) or "") and unknown.get(39) == "8"
    # a basket as a NewOrderList: each order of the list is placed as an order of its own
    fix.send("E", [(66, f"{t}-list"), (394, "3"), (68, "2"), (73, "2"),
                   (11, f"{t}-e1"), (67, "1"), (55, "BTC-USD"), (54, "1"), (60, now()), (38, "0.01"),
                   (40, "2"), (44, "20000"),
                   (11, f"{t}-e2"), (67, "2"), (55, "ETH-USD"), (54, "1"), (60, now()), (38, "0.01"),
                   (40, "2"), (44, "1000")])
    listed = [await fix.until(is_report(f"{t}-e{i}", "0")) for i in (1, 2)]
    assert [m.get(55) for m in listed] == ["BTC-USD", "ETH-USD"]
    quote = fix.send("R", [(131, f"{t}-qr"), (146, "1"), (55, "BTC-USD")])  # a QuoteRequest: not taken
    not_taken = await fix.until(lambda m: m.msg_type == "j")
    assert (not_taken.get(45), not_taken.get(372), not_taken.get(380)) == (str(quote), "R", "3")
    for i in (1, 2):  # tidy: the listed orders rest far from the market
        fix.send("F", [(41, f"{t}-e{i}"), (11, f"{t}-x{i}"), (55, listed[i - 1].require(55)), (54, "1"),
                       (60, now()), (38, "0.01")])
        await fix.until(is_report(f"{t}-x{i}", "4"))

    # bob rests a sell; alice's crossing buy goes out and her connection dies at once
    bob = client(platform, "bob")
    async with aiohttp.ClientSession() as http:
        await bob.ok(http, "POST", "/api/v1/orders", {
            "client_order_id": f"{t}-bob", "symbol": "BTC-USD", "side": "SELL", "quantity": "0.01",
            "price": "29000"})
        await asyncio.sleep(1)
        last_seen = max(int(line.split("|34=")[1].split("|")[0]) for line in fix.transcript
                        if line.startswith("<"))
        fix.send("D", [(11, f"{t}-7"), *order, (38, "0.01"), (44, "29000")])
        await fix.drop()
        alice = client(platform, "alice")
        for _ in range(120):  # the order trades while alice is away
            got = await alice.ok(http, "GET", "/api/v1/history")
            if any(o["client_order_id"] == f"{t}-7" and o["status"] == "FILLED" for o in got["orders"]):
                break
            await asyncio.sleep(0.5)
    await fix.connect()
    back = await fix.logon(creds["secret"])
    assert back.msg_type == "A" and back.seq > last_seen + 1  # the gateway kept what it owes us
    fix.send("2", [(7, last_seen + 1), (16, 0)])
    fill = await fix.until(is_report(f"{t}-7", "F"))
    assert fill.poss_dup and fill.get(122)
    assert (fill.get(32), fill.get(31), fill.get(39)) == ("0.01", "29000", "2")
    fix.send("5", [(58, "bye")])
    await fix.until(lambda m: m.msg_type == "5")
    assert not fix.problems, fix.problems  # nothing received breaks the FIX 4.4 dictionary
    print("\n".join(fix.transcript))


async def test_fix_json_over_websocket(platform: dict[str, Any]) -> None:
    creds = platform["creds"]["accounts"]["bob"]
    t = uuid.uuid4().hex[:6]
    header = {"BeginString": "FIX.4.4", "SenderCompID": creds["key_id"], "TargetCompID": "ORDERSTREAM"}
    async with aiohttp.ClientSession() as http, http.ws_connect(platform["base"] + "/fix") as ws:
        await ws.send_json({"Header": {**header, "MsgType": "A", "MsgSeqNum": "1", "SendingTime": now()},
                            "Body": {"EncryptMethod": "0", "HeartBtInt": "30", "ResetSeqNumFlag": "Y",
                                     "Username": creds["key_id"], "Password": creds["secret"]}})
        logon = await ws.receive_json(timeout=30)
        assert logon["Header"]["MsgType"] == "A" and logon["Body"]["HeartBtInt"] == "30"
        await ws.send_json({"Header": {**header, "MsgType": "D", "MsgSeqNum": "2", "SendingTime": now()},
                            "Body": {"ClOrdID": f"{t}-j", "HandlInst": "1", "Symbol": "ETH-USD", "Side": "2",
                                     "TransactTime": now(), "OrderQty": "0.01", "OrdType": "2",
                                     "Price": "5000", "TimeInForce": "1"}})
        while True:
            frame = await ws.receive_json(timeout=30)
            if frame["Header"]["MsgType"] == "8" and frame["Body"].get("ClOrdID") == f"{t}-j":
                break
        body = frame["Body"]
        assert (body["ExecType"], body["OrdStatus"], body["Price"]) == ("0", "0", "5000")


async def test_fix_sequence_numbers_survive_a_gateway_restart(platform: dict[str, Any]) -> None:
    creds = platform["creds"]["accounts"]["alice"]
    fix = FixClient(platform["fix_port"], creds["key_id"])
    await fix.connect()
    assert (await fix.logon(creds["secret"], reset=True)).msg_type == "A"  # both sides from 1
    t = uuid.uuid4().hex[:6]
    order = [(21, "1"), (55, "BTC-USD"), (54, "1"), (60, now()), (38, "0.01"), (40, "2"), (44, "20000"),
             (59, "1")]
    fix.send("D", [(11, f"{t}-1"), *order])
    first = await fix.until(is_report(f"{t}-1", "0"))
    fix.send("5", [])
    await fix.until(lambda m: m.msg_type == "5")

    services = platform["run"] / "services.json"
    pid = json.loads(services.read_text())["gateway"]["pid"]
    os.kill(pid, 9)
    async with aiohttp.ClientSession() as http:
        for _ in range(240):  # the supervisor starts it again
            await asyncio.sleep(0.25)
            if json.loads(services.read_text())["gateway"]["pid"] == pid:
                continue
            try:
                async with http.get(platform["base"] + "/healthz") as resp:
                    if resp.status == 200:
                        break
            except aiohttp.ClientError:
                pass
    await fix.connect()
    back = await fix.logon(creds["secret"])  # no reset: the numbers go on where they were
    assert back.msg_type == "A", back.get(58)
    assert back.seq == first.seq + 2  # after its report and its Logout
    fix.send("F", [(41, f"{t}-1"), (11, f"{t}-2"), (55, "BTC-USD"), (54, "1"), (60, now()), (38, "0.01")])
    canceled = await fix.until(is_report(f"{t}-2", "4"))
    assert canceled.seq == back.seq + 1 and not canceled.poss_dup
    assert not fix.problems, fix.problems


async def test_an_oco_and_a_bracket_through_the_gateway(platform: dict[str, Any]) -> None:
    """alice's OCO over REST: bob's buy takes part of the limit leg and the stop leg goes at once;
    alice's bracket over the WebSocket: its entry fills, its exits appear, the take-profit's fill
    takes the stop-loss. Bad lists are refused naming the field; the ledger ends exact."""
    alice, bob = client(platform, "alice"), client(platform, "bob")
    t = uuid.uuid4().hex[:6]
    eth = {"symbol": "ETH-USD"}  # other tests leave ETH orders at 1000 and 5000 only
    async with aiohttp.ClientSession() as http:
        for body, code, field in (
            ({**eth, "client_order_id": f"{t}-x1", "side": "SELL", "quantity": "1", "price": "2900",
              "stop_price": "3000"}, 40001, "price"),
            ({**eth, "client_order_id": f"{t}-x2", "side": "BUY", "quantity": "1", "price": "2900",
              "stop_price": "3000"}, 40001, "stop_limit_price"),
            ({"symbol": "ADA-USD", "client_order_id": f"{t}-x3", "side": "SELL", "quantity": "10",
              "price": "1", "stop_price": "0.5"}, 40014, "symbol"),
        ):
            status, _, answer = await alice.call(http, "POST", "/api/v1/oco", body)
            error = answer["error"]
            assert (status, error["code"], error["details"]["field"]) == (400, code, field)
        status, _, answer = await alice.call(http, "POST", "/api/v1/brackets", {
            **eth, "client_order_id": f"{t}-x4", "side": "SELL", "quantity": "1", "price": "2900",
            "take_profit_price": "2800", "stop_price": "3000"})
        assert (status, answer["error"]["details"]["field"]) == (400, "stop_limit_price")

        traders = {"a": alice, "b": bob}
        before = {w: (await c.ok(http, "GET", "/api/v1/balances"))["balances"] for w, c in traders.items()}
        async with alice.session(http) as sa, bob.session(http) as sb:
            for s in (sa, sb):
                await s.call("subscribe", {"stream": "user"})
            oco = await alice.ok(http, "POST", "/api/v1/oco", {
                **eth, "client_order_id": f"{t}-oco", "side": "SELL", "quantity": "1", "price": "3000",
                "stop_price": "1500"})  # below every trade of the module: the stop must not fire at once
            limit, stop = f"{oco['order_id']}/0", f"{oco['order_id']}/1"
            await final_report(sa, limit, "ACCEPTED")
            await sb.call("order.place", {**eth, "client_order_id": f"{t}-b1", "side": "BUY",
                                          "quantity": "0.4", "price": "3000"})
            await final_report(sa, limit, "PARTIALLY_FILLED")  # (reports come in this order)
            assert (await final_report(sa, stop, "CANCELED"))["reason"] == "LINKED_ORDER_EXECUTED"
            await alice.ok(http, "DELETE", f"/api/v1/orders/{oco['order_id']}")  # the list: its open orders
            assert D((await final_report(sa, limit, "CANCELED"))["filled_quantity"]) == D("0.4")

            bracket = await sa.call("order.bracket", {
                **eth, "client_order_id": f"{t}-br", "side": "BUY", "quantity": "1", "price": "2400",
                "take_profit_price": "2600", "stop_price": "2200"})
            entry, tp, sl = (f"{bracket['order_id']}/{n}" for n in range(3))
            await final_report(sa, entry, "ACCEPTED")
            await sb.call("order.place", {**eth, "client_order_id": f"{t}-s1", "side": "SELL",
                                          "quantity": "1", "price": "2400"})
            await final_report(sa, entry, "FILLED")
            assert D((await final_report(sa, tp, "ACCEPTED"))["quantity"]) == 1
            await final_report(sa, sl, "ACCEPTED")
            await sb.call("order.place", {**eth, "client_order_id": f"{t}-b2", "side": "BUY", "quantity": "1",
                                          "price": "2600"})
            await final_report(sa, tp, "FILLED")
            assert (await final_report(sa, sl, "CANCELED"))["reason"] == "LINKED_ORDER_EXECUTED"
        # alice: sold 0.4 ETH at 3000 (maker), bought 1 at 2400 (maker), sold it at 2600 (maker)
        want = {
            ("a", "ETH"): total(before["a"], "ETH") - D("0.4"),
            ("a", "USD"): total(before["a"], "USD") + D("1198.8") - D("2402.4") + D("2597.4"),
            ("b", "ETH"): total(before["b"], "ETH") + D("0.4"),
            ("b", "USD"): total(before["b"], "USD") - D("1202.4") + D("2395.2") - D("2605.2"),
        }
        await settled(http, traders, want)
        after = (await alice.ok(http, "GET", "/api/v1/balances"))["balances"]
        for asset in ("ETH", "USD"):  # what the lists held is all released
            assert D(after[asset]["held"]) == D(before["a"][asset]["held"])

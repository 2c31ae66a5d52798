"""Reads and request guards as users meet them: the collector and two gateway processes on one database.

Balances come from what the real collector stored from collateral.events; the two gateways share
the replay cache and the rate limits, as two replicas behind a load balancer would.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from cryptography.fernet import Fernet
from motor.motor_asyncio import AsyncIOMotorClient

from orderstream.client import GatewayClient as Client
from orderstream.client import sign
from orderstream.collector.store import write_batch
from orderstream.common import records as r
from orderstream.common.history import order_document
from orderstream.common.topics import create_topics
from tests.conftest import Infra
from tests.e2e.stack import CODEC, instrument
from tests.kafka_tools import Worker, free_port, produce, unique_prefix
from tests.reports import report

pytestmark = pytest.mark.integration

ADMIN = ("kadmin", "admin-secret-for-reads")
WINDOW_MS = 10_000


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    prefix, database = unique_prefix(), f"rd{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("reads")
    await create_topics(infra.kafka_bootstrap, prefix=prefix, partitions=2)
    await produce(infra.kafka_bootstrap, prefix + "ref.instruments",
                  [(b"BTC-USD", CODEC.encode(instrument("BTC-USD")), {})])
    common = {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap, "MONGO_URL": infra.mongo_url,
              "ORDERSTREAM_TOPIC_PREFIX": prefix, "ORDERSTREAM_PARTITIONS": "2"}
    collector_port = free_port()
    workers = [Worker("orderstream.collector", {
        **common, "ORDERSTREAM_COLLECTOR_MONGO_DATABASE": database,
        "ORDERSTREAM_COLLECTOR_WEB_PORT": str(collector_port),
        "ORDERSTREAM_COLLECTOR_DATA_DIR": str(tmp / "collector")}, tmp / "collector.log").start()]
    secret_key = Fernet.generate_key().decode()  # the gateways share it, as replicas do
    bases = []
    for n in (1, 2):
        port = free_port()
        workers.append(Worker("orderstream.gateway", {
            **common, "ORDERSTREAM_GATEWAY_WEB_PORT": str(port),
            "ORDERSTREAM_GATEWAY_DATA_DIR": str(tmp / f"gateway{n}"),
            "ORDERSTREAM_GATEWAY_MONGO_DATABASE": database, "ORDERSTREAM_GATEWAY_SECRET_KEY": secret_key,
            "ORDERSTREAM_GATEWAY_ADMIN_KEY_ID": ADMIN[0], "ORDERSTREAM_GATEWAY_ADMIN_SECRET": ADMIN[1],
            "ORDERSTREAM_GATEWAY_RECV_WINDOW_MS": str(WINDOW_MS),
            "ORDERSTREAM_GATEWAY_ORDERS_PER_S": "0.001", "ORDERSTREAM_GATEWAY_ORDERS_BURST": "4",
            "ORDERSTREAM_GATEWAY_MAX_ORDERS_IN_FLIGHT": "1000000",  # no order path behind it
            "ORDERSTREAM_GATEWAY_FIX_PORT": "0",
        }, tmp / f"gateway{n}.log").start())
        bases.append(f"http://127.0.0.1:{port}")
    try:
        await workers[0].wait_healthy(collector_port)
        for base, worker in zip(bases, workers[1:], strict=True):
            await worker.wait_ready(base)
        admin = Client(bases[0], *ADMIN)
        keys = {}
        async with aiohttp.ClientSession() as http:
            for account in ("tie", "old", "pager", "replay", "future", "limited"):
                body = await admin.ok(http, "POST", "/api/v1/admin/accounts", {"account_id": account})
                keys[account] = (body["key_id"], body["secret"])
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(infra.mongo_url, tz_aware=True)
        yield {"bases": bases, "keys": keys, "prefix": prefix, "bootstrap": infra.kafka_bootstrap,
               "db": client[database]}
        await client.drop_database(database)
        client.close()
    finally:
        for worker in workers:
            worker.stop()


def client(stack: dict[str, Any], account: str, gateway: int = 0) -> Client:
    return Client(stack["bases"][gateway], *stack["keys"][account])


def balance_event(kind: type[Any], account: str, seq: int, ts: int, asset: str, free: str, held: str,
                  event_id: str, **fields: Any) -> Any:
    defaults: dict[str, Any] = {
        r.Deposited: {"command_id": event_id, "amount": Decimal(free), "lot_id": "l", "source": "bank"},
        r.CollateralHeld: {"order_id": "o1", "amount": Decimal(held)},
        r.FillSettled: {"order_id": "o1", "trade_id": "t1", "delta": Decimal(-30), "fee": Decimal(0)},
        r.CollateralReleased: {"order_id": "o1", "amount": Decimal(10), "reason": "FILLED"},
    }[kind]
    return kind(event_id=event_id, ts_event=ts, account_id=account, asset=asset, free=Decimal(free),
                held=Decimal(held), sequence=seq, **{**defaults, **fields})


async def publish_collateral(stack: dict[str, Any], events: list[Any]) -> None:
    await produce(stack["bootstrap"], stack["prefix"] + "collateral.events",
                  [(e.account_id.encode(), CODEC.encode(e), {}) for e in events])


async def balances_when(stack: dict[str, Any], account: str, want: dict[str, Any],
                        timeout: float = 60) -> dict[str, Any]:
    """GET /balances until it answers `want` or the time is up; the last answer."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            got = (await client(stack, account).ok(http, "GET", "/api/v1/balances"))["balances"]
            if got == want or time.monotonic() > deadline:
                return dict(got)
            await asyncio.sleep(0.3)


async def test_a_settlement_and_its_release_at_one_time_show_the_released_balance(
    stack: dict[str, Any],
) -> None:
    """A fill's settlement and the release of the rest of its hold come from one report (one
    timestamp); the balance shown is the one after the release, also when collateral sends the
    settlement again afterwards (its redelivered command)."""
    ts = time.time_ns()
    deposit = balance_event(r.Deposited, "tie", 1, ts, "USD", "100", "0", "d1:0")
    hold = balance_event(r.CollateralHeld, "tie", 2, ts + 1, "USD", "60", "40", "c1:0")
    settled = balance_event(r.FillSettled, "tie", 3, ts + 2, "USD", "60", "10", "e1:s0")
    released = balance_event(r.CollateralReleased, "tie", 4, ts + 2, "USD", "70", "0", "e1:r")
    await publish_collateral(stack, [deposit, hold, settled, released])
    await publish_collateral(stack, [settled])  # sent again after the release, same event id
    want = {"USD": {"free": "70", "held": "0"}}
    assert await balances_when(stack, "tie", want) == want


async def test_an_asset_whose_last_event_is_older_than_5000_others_still_shows(
    stack: dict[str, Any],
) -> None:
    ts = time.time_ns()
    btc = balance_event(r.Deposited, "old", 1, ts, "BTC", "2", "0", "btc:0")
    usd = [balance_event(r.Deposited, "old", 2 + i, ts + 1 + i, "USD", str(i + 1), "0", f"usd{i}:0")
           for i in range(5001)]
    await publish_collateral(stack, [btc, *usd])
    want = {"BTC": {"free": "2", "held": "0"}, "USD": {"free": "5001", "held": "0"}}
    assert await balances_when(stack, "old", want, timeout=120) == want


async def test_more_than_1000_open_orders_are_all_reachable_page_by_page(stack: dict[str, Any]) -> None:
    reports = [report(o, 1, account="pager") for o in range(1100)]
    reports += [report(o, 3, account="pager") for o in range(1100, 1110)]  # closed: never listed
    await write_batch(stack["db"], reports)  # the collector's write path
    assert all(order_document(x)["status"] == "ACCEPTED" for x in reports[:1100])
    seen: list[str] = []
    pager = client(stack, "pager")
    async with aiohttp.ClientSession() as http:
        after: str | None = None
        while True:
            page = await pager.ok(http, "GET", "/api/v1/orders" + (f"?after={after}" if after else ""))
            seen += [o["order_id"] for o in page["orders"]]
            after = page["next"]
            if after is None:
                break
        async with http.ws_connect(stack["bases"][1] + "/ws") as ws:
            await pager.login(ws)
            ws_seen: list[str] = []
            after = None
            while True:
                params: dict[str, Any] = {"limit": 1000, **({"after": after} if after else {})}
                await ws.send_json({"id": "o", "method": "orders.open", "params": params})
                result = (await ws.receive_json(timeout=30))["result"]
                ws_seen += [o["order_id"] for o in result["orders"]]
                if (after := result["next"]) is None:
                    break
    want = sorted(x.order_id for x in reports[:1100])
    assert len(seen) == len(set(seen)) and sorted(seen) == want
    assert sorted(ws_seen) == want


async def test_a_signature_used_at_one_gateway_is_refused_at_the_other(stack: dict[str, Any]) -> None:
    one = client(stack, "replay", 0)
    path = "/api/v1/balances"
    headers = one.headers("GET", path, b"")
    async with aiohttp.ClientSession() as http:
        async with http.get(stack["bases"][0] + path, headers=headers) as resp:
            assert resp.status == 200
        async with http.get(stack["bases"][1] + path, headers=headers) as resp:
            assert (resp.status, (await resp.json())["error"]["code"]) == (401, 40104)
        login = one.login_frame()
        for base, answer in ((stack["bases"][0], "result"), (stack["bases"][1], "error")):
            async with http.ws_connect(base + "/ws") as ws:
                await ws.send_json(login)
                assert answer in await ws.receive_json(timeout=10)


async def test_a_future_dated_signature_is_refused_on_replay_until_it_leaves_the_window(
    stack: dict[str, Any],
) -> None:
    """Signed 8 s ahead with a 10 s window, the request may come back for 18 s. It is remembered that
    long on both gateways, however many other requests come meanwhile (10,001 logins here)."""
    gw = client(stack, "future")
    path = "/api/v1/balances"
    signed_at = int(time.time() * 1000) + 8_000
    headers = gw.headers("GET", path, b"", ts=signed_at)

    async def status(base: str) -> tuple[int, Any]:
        async with http.get(base + path, headers=headers) as resp:
            body = await resp.json()
            return resp.status, body.get("error", {}).get("code")

    last = {"ts": 0}

    async def logins(start: int, count: int) -> None:
        async with http.ws_connect(stack["bases"][0] + "/ws") as ws:
            for i in range(start, start + count):
                # each login its own signature (a timestamp of its own), close to the clock however slow
                # the machine: a fixed schedule fell out of the window when the logins ran slowly
                ts = last["ts"] = max(int(time.time() * 1000), last["ts"] + 1)
                frame = {"id": i, "method": "auth.login", "params": {
                    "key": gw.key, "timestamp": ts, "signature": sign(gw.secret, str(ts), "GET", "/ws", b"")}}
                await ws.send_json(frame)
                assert "result" in await ws.receive_json(timeout=30)

    async with aiohttp.ClientSession() as http:
        assert await status(stack["bases"][0]) == (200, None)
        await asyncio.gather(*(logins(n * 500, 500) for n in range(20)), logins(10_000, 1))
        # a process that remembers a signature for one window from when it saw it has forgotten it now
        await asyncio.sleep(max(0.0, signed_at - 8_000 + WINDOW_MS + 300 - time.time() * 1000) / 1000)
        assert time.time() * 1000 < signed_at + WINDOW_MS - 1_000, "the test ran too slowly to tell"
        assert await status(stack["bases"][0]) == (401, 40104)
        assert await status(stack["bases"][1]) == (401, 40104)
        await asyncio.sleep(max(0.0, signed_at + WINDOW_MS + 300 - time.time() * 1000) / 1000)
        assert await status(stack["bases"][1]) == (401, 40103)  # out of the window: stale, as any


async def test_the_order_rate_limit_holds_across_two_gateways(stack: dict[str, Any]) -> None:
    """Burst 4 per key: 2 orders at each gateway pass, the next is refused at either."""
    one, two = client(stack, "limited", 0), client(stack, "limited", 1)

    def order(cid: str) -> dict[str, Any]:
        return {"client_order_id": cid, "symbol": "BTC-USD", "side": "BUY", "quantity": "0.01",
                "price": "30000"}

    async with aiohttp.ClientSession() as http:
        codes = []
        for n, c in enumerate((one, two, one, two, one, two)):
            status, headers, body = await c.call(http, "POST", "/api/v1/orders", order(f"lim{n}"))
            codes.append(status)
        assert codes == [200, 200, 200, 200, 429, 429], codes
        assert json.dumps(body["error"]["code"]) == "42901" and int(headers["Retry-After"]) >= 1

"""Index orders by collateral amount through the gateway, on the whole platform (`orderstream up`).

A quote across three symbols (BTC-USD, ETH-USD and XRP-USD, all on the internal matcher), then the
index order placed from it; another trader takes some of the ETH between the two, which is why the
order buys fewer units than quoted. Then an update (less collateral: collateral releases the
difference), a router killed (kill -9) while the order waits for liquidity and new liquidity added
while it is down (the restarted router resumes the rounds), and a cancel that releases what is left.
The ledger is exact throughout: the buyer's balances are its deposits minus what the index order
reports spent, nothing stays held, and each asset is conserved across the three traders and fees.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest

from orderstream.client import ApiCallError, GatewayClient, Session
from orderstream.common.index import Leg, Pricing, fit
from orderstream.ops.platform import publish_instruments, wait_for_balances
from tests.e2e.stack import instrument

pytestmark = pytest.mark.integration

XRP = {
    "symbol": "XRP-USD",
    "base_asset": "XRP",
    "quote_asset": "USD",
    "tick_size": "0.0001",
    "lot_size": "1",
    "min_quantity": "1",
    "min_notional": "1",
    "maker_fee": "0.001",
    "taker_fee": "0.002",
    "venue": "INTERNAL",
    "enabled": True,
}
LEGS = [
    {"symbol": "BTC-USD", "weight": "0.01"},
    {"symbol": "ETH-USD", "weight": "0.1"},
    {"symbol": "XRP-USD", "weight": "100"},
]
ASKS = {
    "BTC-USD": [("30000", "0.05"), ("30010", "0.05")],
    "ETH-USD": [("2000", "1")],
    "XRP-USD": [("0.5", "1000")],
}


async def account(
    http: aiohttp.ClientSession, admin: GatewayClient, base: str, name: str, deposits: dict[str, str]
) -> GatewayClient:
    made = await admin.ok(http, "POST", "/api/v1/admin/accounts", {"account_id": name})
    for asset, amount in deposits.items():
        await admin.ok(
            http, "POST", "/api/v1/admin/deposits", {"account_id": name, "asset": asset, "amount": amount}
        )
    trader = GatewayClient(base, made["key_id"], made["secret"])
    await wait_for_balances(http, trader, deposits)
    return trader


async def balances(http: aiohttp.ClientSession, trader: GatewayClient) -> dict[str, tuple[D, D]]:
    got = (await trader.ok(http, "GET", "/api/v1/balances"))["balances"]
    return {a: (D(b["free"]), D(b["held"])) for a, b in got.items()}


async def progress(session: Session, order_id: str, done: Any, timeout: float = 60) -> dict[str, Any]:
    """The first IndexOrderUpdated of `order_id` on the user stream for which `done(event)` holds."""

    async def until() -> dict[str, Any]:
        while True:
            frame = await session.events.get()
            data = frame.get("data", {})
            if frame.get("type") == "index_order_updated" and data["order_id"] == order_id and done(data):
                return dict(data)

    return await asyncio.wait_for(until(), timeout)


async def sell(session: Session, symbol: str, quantity: str, price: str, tif: str = "GTC") -> str:
    placed = await session.call(
        "order.place",
        {
            "client_order_id": f"s-{uuid.uuid4().hex[:8]}",
            "symbol": symbol,
            "side": "SELL",
            "quantity": quantity,
            "price": price,
            "time_in_force": tif,
        },
    )
    return str(placed["order_id"])


def settled(event: dict[str, Any]) -> bool:
    return event["open_children"] == 0 and event["rounds"] > 0


async def test_a_quote_then_an_index_order_from_it_an_update_a_router_restart_and_a_cancel(
    platform: dict[str, Any],
) -> None:
    env, base, run = platform["env"], platform["base"], uuid.uuid4().hex[:6]
    admin = GatewayClient(base, platform["creds"]["admin"]["key_id"], platform["creds"]["admin"]["secret"])
    await publish_instruments(env["KAFKA_BOOTSTRAP_SERVERS"], env["ORDERSTREAM_TOPIC_PREFIX"], [XRP])
    deposits = {
        "maker": {"BTC": "10", "ETH": "100", "XRP": "100000"},
        "buyer": {"USD": "100000"},
        "taker": {"USD": "100000"},
    }
    async with aiohttp.ClientSession() as http:
        for _ in range(100):  # the gateway follows ref.instruments
            listed = await admin.ok(http, "GET", "/api/v1/instruments")
            if any(i["symbol"] == "XRP-USD" for i in listed["instruments"]):
                break
            await asyncio.sleep(0.2)
        traders = {w: await account(http, admin, base, f"{w}-{run}", d) for w, d in deposits.items()}
        async with (
            traders["maker"].session(http) as maker,
            traders["buyer"].session(http) as buyer,
            traders["taker"].session(http) as taker,
        ):
            await buyer.call("subscribe", {"stream": "user"})
            for symbol, levels in ASKS.items():
                for price, quantity in levels:
                    await sell(maker, symbol, quantity, price)

            # a quote, from the depth snapshots once they show the asks: 10 units, every book emptied
            books = {s: [(D(p), D(q)) for p, q in levels] for s, levels in ASKS.items()}
            legs = [Leg(x["symbol"], D(x["weight"])) for x in LEGS]
            instruments = {
                s: instrument(s, tick=t, lot=lot)
                for s, t, lot in (
                    ("BTC-USD", "0.5", "0.0001"),
                    ("ETH-USD", "0.05", "0.001"),
                    ("XRP-USD", "0.0001", "1"),
                )
            }
            expected = fit(legs, D(10000), books, instruments, Pricing.TAKER)
            for _ in range(100):
                quote = await buyer.call("quote.request", {"legs": LEGS, "collateral_amount": "10000"})
                if D(quote["units"]) == expected.units:
                    break
                await asyncio.sleep(0.2)
            assert (D(quote["units"]), quote["limited_by"], quote["asset"]) == (D(10), "LIQUIDITY", "USD")
            assert D(quote["cost"]) == expected.cost and D(quote["unspent"]) == D(10000) - expected.cost
            assert [(x["symbol"], D(x["quantity"]), D(x["limit_price"])) for x in quote["legs"]] == [
                ("BTC-USD", D("0.1"), D(30010)),
                ("ETH-USD", D(1), D(2000)),
                ("XRP-USD", D(1000), D("0.5")),
            ]
            with pytest.raises(ApiCallError) as refused:  # the mock venue's book is not one the gateway sees
                await buyer.call(
                    "quote.request",
                    {"legs": [*LEGS, {"symbol": "SOL-USD", "weight": "1"}], "collateral_amount": "10000"},
                )
            assert (refused.value.code, refused.value.details["field"]) == (40001, "legs.3.symbol")

            # another trader takes 0.3 ETH before the index order comes: 3 units fewer than quoted
            await taker.call(
                "order.place",
                {
                    "client_order_id": f"t-{run}",
                    "symbol": "ETH-USD",
                    "side": "BUY",
                    "quantity": "0.3",
                    "price": "2000",
                    "time_in_force": "IOC",
                },
            )
            await asyncio.sleep(1.5)  # the router sees the book without them (depth snapshots: 1 s)
            placed = await buyer.call(
                "order.index",
                {
                    "client_order_id": f"ix-{run}",
                    "legs": LEGS,
                    "collateral_amount": "10000",
                    "quote_id": quote["quote_id"],
                    "max_slippage": "0.01",
                },
            )
            order_id = placed["order_id"]
            first = await progress(buyer, order_id, settled)
            assert first["status"] == "WORKING" and D(first["units"]) == D(7), first
            quoted, filled = (
                format(D(quote["units"]).normalize(), "f"),
                format(D(first["units"]).normalize(), "f"),
            )
            print(
                f"quoted {quoted} units, filled {filled}: 0.3 ETH (3 units x 0.1) was taken after the quote"
            )
            assert [D(x["filled_quantity"]) for x in first["legs"]] == [D("0.07"), D("0.7"), D(700)]
            # its prices: BTC 0.05 at 30000 and 0.02 at 30010; the taker fee 0.2% on each child
            btc = D("0.05") * 30000 + D("0.02") * 30010
            notional = btc + D("0.7") * 2000 + 700 * D("0.5")
            assert D(first["spent"]) - notional == sum(D(x["fees"]) for x in first["legs"])
            await progress(buyer, order_id, lambda e: e["reason"] == "LIQUIDITY" or e["rounds"] > 1, 10)

            # less collateral: collateral releases what the pool holds beyond 6000
            held = (await balances(http, traders["buyer"]))["USD"][1]
            await buyer.call("order.index.update", {"order_id": order_id, "collateral_amount": "6000"})
            updated = await progress(buyer, order_id, lambda e: D(e["collateral_amount"]) == 6000)
            assert D(updated["left"]) == 6000 - D(first["spent"])
            for _ in range(60):
                now = (await balances(http, traders["buyer"]))["USD"][1]
                if now == held - 4000:
                    break
                await asyncio.sleep(0.25)
            assert now == held - 4000 == 6000 - D(first["spent"])

            # the router is killed while the order waits; liquidity comes while it is down
            pid = json.loads((platform["run"] / "services.json").read_text())["router"]["pid"]
            os.kill(pid, 9)
            await sell(maker, "ETH-USD", "0.5", "2000")
            last = await progress(buyer, order_id, lambda e: D(e["units"]) == 10 and settled(e), 120)
            assert [D(x["filled_quantity"]) for x in last["legs"]] == [D("0.1"), D(1), D(1000)]
            assert D(last["left"]) == 6000 - D(last["spent"]) > 0

            # more collateral: held at once; more than the free balance: refused, the amount stays
            await buyer.call("order.index.update", {"order_id": order_id, "collateral_amount": "7000"})
            await progress(buyer, order_id, lambda e: D(e["collateral_amount"]) == 7000)
            for _ in range(60):
                if (await balances(http, traders["buyer"]))["USD"][1] == 7000 - D(last["spent"]):
                    break
                await asyncio.sleep(0.25)
            assert (await balances(http, traders["buyer"]))["USD"][1] == 7000 - D(last["spent"])
            await buyer.call("order.index.update", {"order_id": order_id, "collateral_amount": "1000000"})
            refused_update = await progress(buyer, order_id, lambda e: e["reason"] == "INSUFFICIENT_FUNDS")
            assert D(refused_update["collateral_amount"]) == 7000

            # cancel: the rest is released
            await buyer.call("order.cancel", {"order_id": order_id})
            end = await progress(buyer, order_id, lambda e: e["status"] == "CANCELED")
            assert D(end["spent"]) == D(last["spent"]) and end["open_children"] == 0

            # an index order canceled at once: the ReleaseParentHold may reach collateral before its
            # children's reports, and the pool still settles each of them before it lets go
            await sell(maker, "BTC-USD", "0.02", "30000")
            await sell(maker, "XRP-USD", "200", "0.5")
            await asyncio.sleep(1.5)  # ETH has 0.2 left: two more units on every book
            quick = await buyer.call(
                "order.index", {"client_order_id": f"iy-{run}", "legs": LEGS, "collateral_amount": "2000"}
            )
            await buyer.call("order.cancel", {"order_id": quick["order_id"]})
            gone = await progress(
                buyer, quick["order_id"], lambda e: e["status"] == "CANCELED" and not e["open_children"]
            )
            print(f"canceled at once: {D(gone['units']).normalize()} units bought first")

        # the ledger: exact balances, nothing held, each asset conserved across traders and fees
        bought = {x["symbol"].split("-")[0]: D(x["filled_quantity"]) for x in gone["legs"]}
        want_buyer = {
            "USD": D(100000) - D(end["spent"]) - D(gone["spent"]),
            "BTC": D("0.1") + bought["BTC"],
            "ETH": D(1) + bought["ETH"],
            "XRP": D(1000) + bought["XRP"],
        }
        for _ in range(60):
            got = await balances(http, traders["buyer"])
            if {a: f + h for a, (f, h) in got.items()} == want_buyer and all(h == 0 for _, h in got.values()):
                break
            await asyncio.sleep(0.25)
        assert {a: f + h for a, (f, h) in got.items()} == want_buyer and all(h == 0 for _, h in got.values())
        totals: dict[str, D] = {}
        for who, trader in traders.items():
            if who == "maker":  # its resting asks are canceled first: their holds go back
                for o in (await trader.ok(http, "GET", "/api/v1/orders"))["orders"]:
                    await trader.ok(http, "DELETE", f"/api/v1/orders/{o['order_id']}")
            for _ in range(60):
                got = await balances(http, trader)
                if all(h == 0 for _, h in got.values()):
                    break
                await asyncio.sleep(0.25)
            for asset, (free, held) in got.items():
                assert held == 0, (who, asset)
                totals[asset] = totals.get(asset, D(0)) + free
        fees = D(0)
        for trader in traders.values():
            history = (await trader.ok(http, "GET", "/api/v1/history?limit=500"))["orders"]
            fees += sum(D(o["fees"]) for o in history)
        deposited = {
            a: sum(D(d.get(a, "0")) for d in deposits.values()) for a in ("USD", "BTC", "ETH", "XRP")
        }
        assert {a: totals.get(a, D(0)) + (fees if a == "USD" else 0) for a in deposited} == deposited
    for log in sorted((platform["run"] / "logs").glob("*.log")):  # no record went to a dead-letter topic
        assert "dead-lettered" not in log.read_text(errors="replace"), log.name

"""`orderstream demo` (what `make demo` runs): live traffic through the gateway, then end-state checks.

Several traders, each a real WebSocket client of the gateway, are created and funded through
the admin API. For `--seconds` they place a realistic mix around a mid price (limit orders on
both sides, IOC and market orders, cancels), and each places a stop, an iceberg, a basket, an OCO,
a bracket, an index order by collateral amount (a quote of BTC-USD and ETH-USD, then the order placed
from it), an order on the mock venue, two on the FIX venue (ADA-USD, QuickFIX/J's Executor) and a
TWAP parent order (BTC-USD, sliced by the router into IOC children once a second). A live line
every second shows orders/s, acks, fills, the p50/p99 from sending `order.place` to the order's
first execution report, and the BTC-USD book top.

Then every open order is canceled and, once every order is final, the demo checks:
- every trader's report sequence numbers arrived without a gap;
- ledger: each trader's balance (free + held) from the gateway equals its deposits plus its
  fills minus its fees, exactly, and nothing is held any more;
- conservation: across the traders, balances plus fees equal deposits plus what the external
  venues (outside counterparties: the mock venue, the FIX venue) paid in or took out;
- history: the MongoDB order history (collector) has every order with the status and filled
  quantity of its last report;
- order lists: at most one leg of an OCO traded; a bracket's exits never exceed what its entry
  filled, and at most one of them traded;
- TWAP: every parent ended, its filled quantity and slice count equal to its children's reports;
- index orders: each ended (canceled with the rest, or completed) with no child open, and what
  it reports spent is exactly its children's fills plus their fees.
Exit status 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal as D
from typing import Any

import aiohttp

from orderstream.client import ApiCallError, GatewayClient, Session
from orderstream.ops.platform import load_credentials, run_dir

FINAL = {"FILLED", "CANCELED", "REJECTED", "EXPIRED"}
DEPOSITS = {"USD": D(2_000_000), "BTC": D(40), "ETH": D(400), "SOL": D(10_000), "ADA": D(10_000)}
MARKETS = {  # symbol: (mid, tick, lot, most lots per order)
    "BTC-USD": (D(30000), D("0.5"), D("0.0001"), 300),
    "ETH-USD": (D(2000), D("0.05"), D("0.001"), 400),
}
MOCK = ("SOL-USD", D(100), D("0.01"), D("0.01"))
FIX = "ADA-USD"  # at the FIX venue (QuickFIX/J's Executor): marketable limits fill at its 0.50
INDEX = {  # an index order by collateral amount: a unit is 0.001 BTC and 0.01 ETH (about 50 USD)
    "legs": [{"symbol": "BTC-USD", "weight": "0.001"}, {"symbol": "ETH-USD", "weight": "0.01"}],
    "collateral_amount": "500",
}


@dataclass
class Trader:
    account: str
    client: GatewayClient
    session: Session | None = None
    sent: dict[str, float] = field(default_factory=dict)  # client_order_id -> when order.place went out
    reports: dict[str, dict[int, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    open_ids: list[str] = field(default_factory=list)
    lists: dict[str, str] = field(default_factory=dict)  # order list id -> OCO or BRACKET
    algos: dict[str, dict[str, Any]] = field(default_factory=dict)  # parent id -> its latest AlgoOrderUpdated
    n: int = 0
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(16))
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    index: dict[str, dict[str, Any]] = field(default_factory=dict)  # index order id -> its last event
    quoted: dict[str, str] = field(default_factory=dict)  # index order id -> the units its quote said

    def cid(self) -> str:
        self.n += 1
        return f"d{self.n}"

    def last(self, order_id: str) -> dict[str, Any]:
        seqs = self.reports[order_id]
        return seqs[max(seqs)]


def plain(value: D) -> str:
    return format(value.normalize(), "f")


@dataclass
class Stats:
    placed: int = 0
    refused: int = 0
    acks: int = 0
    fills: int = 0
    latencies: list[float] = field(default_factory=list)
    book: dict[str, dict[D, D]] = field(default_factory=lambda: {"BID": {}, "ASK": {}})

    def top(self) -> str:
        bid = max(self.book["BID"], default=None)
        ask = min(self.book["ASK"], default=None)

        def level(side: str, price: D | None) -> str:
            if price is None:
                return f"{side.lower()} -"
            return f"{side.lower()} {plain(price)} x {plain(self.book[side][price])}"

        return f"{level('BID', bid)} / {level('ASK', ask)}"

    def pct(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] * 1000 if self.latencies else 0.0
        return statistics.quantiles(self.latencies, n=100)[int(q) - 1] * 1000


async def listen(trader: Trader, stats: Stats) -> None:
    assert trader.session is not None
    while True:
        frame = await trader.session.events.get()
        if frame.get("type") == "algo_order_updated":
            update = frame["data"]
            if update["sequence"] > trader.algos.get(update["order_id"], {}).get("sequence", 0):
                trader.algos[update["order_id"]] = update
        if frame.get("type") == "index_order_updated":
            event = frame["data"]
            if event["sequence"] > trader.index.get(event["order_id"], {}).get("sequence", 0):
                trader.index[event["order_id"]] = event
            continue
        if frame.get("type") != "execution_report":
            continue
        rep = frame["data"]
        seqs = trader.reports[rep["order_id"]]
        if rep["sequence"] in seqs:
            continue
        if not seqs:
            t0 = trader.sent.pop(rep["client_order_id"], None)
            if t0 is not None:
                stats.acks += 1
                stats.latencies.append(time.monotonic() - t0)
        seqs[rep["sequence"]] = rep
        if rep.get("last_fill_quantity") and D(rep["last_fill_quantity"]) > 0:
            stats.fills += 1


async def watch_book(session: Session, stats: Stats, symbol: str) -> None:
    answer = await session.call("subscribe", {"stream": "market", "symbol": symbol})
    for level in (answer.get("snapshot") or {}).get("levels", []):
        stats.book[level["side"]][D(level["price"])] = D(level["quantity"])
    while True:
        frame = await session.events.get()
        if frame.get("type") == "book":
            for level in frame["data"]["changes"]:
                side, price, qty = level["side"], D(level["price"]), D(level["quantity"])
                if qty == 0:
                    stats.book[side].pop(price, None)
                else:
                    stats.book[side][price] = qty


async def fire(trader: Trader, action: Coroutine[Any, Any, None]) -> None:
    """Run an action without waiting for its answer; at most `in_flight` per trader at a time."""
    await trader.slots.acquire()

    async def run() -> None:
        try:
            await action
        finally:
            trader.slots.release()

    task = asyncio.get_running_loop().create_task(run())
    trader.tasks.add(task)
    task.add_done_callback(trader.tasks.discard)


async def cancel(trader: Trader, order_id: str) -> None:
    assert trader.session is not None
    with contextlib.suppress(ApiCallError):  # it may have ended already
        await trader.session.call("order.cancel", {"order_id": order_id})


async def place(trader: Trader, stats: Stats, params: dict[str, Any]) -> None:
    assert trader.session is not None
    cid = trader.cid()
    if "collateral_amount" in params:
        await place_index(trader, stats, cid, params)
        return
    trader.sent[cid] = time.monotonic()
    params = dict(params)
    method = params.pop("method", "order.basket" if "legs" in params else "order.place")
    try:
        result = await trader.session.call(method, {"client_order_id": cid, **params})
        stats.placed += 1
        if method != "order.place":  # reports come per child (`<parent>/<n>`), so no ack is timed
            trader.sent.pop(cid, None)
            placed = {"order.basket": len(params.get("legs", [])), "order.oco": 2, "order.bracket": 1}
            children = placed[method]
            trader.open_ids.extend(f"{result['order_id']}/{i}" for i in range(children))
            if method != "order.basket":
                trader.lists[result["order_id"]] = "OCO" if method == "order.oco" else "BRACKET"
        else:
            trader.open_ids.append(result["order_id"])
    except ApiCallError as exc:
        trader.sent.pop(cid, None)
        stats.refused += 1
        if exc.code == 42901:
            await asyncio.sleep(float(exc.details.get("retry_after_s", 0.5)))


async def place_algo(trader: Trader, stats: Stats, params: dict[str, Any]) -> None:
    """A TWAP parent; its progress comes as algo_order_updated, its children as ordinary reports."""
    assert trader.session is not None
    try:
        result = await trader.session.call("order.algo", {"client_order_id": trader.cid(), **params})
        stats.placed += 1
        trader.algos.setdefault(result["order_id"], {"order_id": result["order_id"], "status": "WORKING",
                                                     "sequence": 0})
    except ApiCallError:
        stats.refused += 1


async def place_index(trader: Trader, stats: Stats, cid: str, params: dict[str, Any]) -> None:
    """A quote, then the index order placed from it (child prices capped 2% above the quote's)."""
    assert trader.session is not None
    try:
        quote = await trader.session.call("quote.request", params)
        placed = await trader.session.call(
            "order.index",
            {"client_order_id": cid, **params, "quote_id": quote["quote_id"], "max_slippage": "0.02"},
        )
        trader.quoted[placed["order_id"]] = quote["units"]
        trader.index.setdefault(placed["order_id"], {})
        stats.placed += 1
    except ApiCallError:
        stats.refused += 1


def algo_ended(trader: Trader) -> bool:
    return all(a["status"] != "WORKING" for a in trader.algos.values())


def limit(rng: random.Random, symbol: str, *, crossing: bool = False) -> dict[str, Any]:
    mid, tick, lot, most = MARKETS[symbol]
    side = rng.choice(["BUY", "SELL"])
    ticks = rng.randint(-8, 30) if not crossing else -rng.randint(1, 10)
    price = mid - ticks * tick if side == "BUY" else mid + ticks * tick
    return {
        "symbol": symbol,
        "side": side,
        "order_type": "LIMIT",
        "price": str(price),
        "quantity": str(lot * rng.randint(1, most)),
        "time_in_force": "IOC" if crossing else "GTC",
    }


def market(rng: random.Random, symbol: str) -> dict[str, Any]:
    """A market order (IOC); a buy carries the quote budget collateral needs, 2% over the mid."""
    mid, _, lot, _ = MARKETS[symbol]
    side = rng.choice(["BUY", "SELL"])
    qty = lot * rng.randint(1, 50)
    budget = {"quote_budget": str((qty * mid * D("1.02")).quantize(D("0.01")))} if side == "BUY" else {}
    return {
        "symbol": symbol,
        "side": side,
        "order_type": "MARKET",
        "time_in_force": "IOC",
        "quantity": str(qty),
        **budget,
    }


async def trade(trader: Trader, stats: Stats, seconds: float, rate: float, seed: int) -> None:
    rng = random.Random(seed)
    btc_mid, btc_tick, btc_lot, _ = MARKETS["BTC-USD"]
    specials: list[dict[str, Any]] = [
        {
            "symbol": "BTC-USD",
            "side": "SELL",
            "order_type": "STOP_MARKET",
            "quantity": str(btc_lot * 10),
            "stop_price": str(btc_mid - 40 * btc_tick),
        },
        {**limit(rng, "BTC-USD"), "quantity": str(btc_lot * 200), "display_quantity": str(btc_lot * 20)},
        {
            "quantity": "1",
            "legs": [
                {
                    "symbol": "BTC-USD",
                    "side": "BUY",
                    "weight": str(btc_lot * 5),
                    "price": str(btc_mid + 20 * btc_tick),
                },
                {"symbol": "ETH-USD", "side": "BUY", "weight": "0.05", "price": "2001"},
            ],
        },
        {
            "symbol": MOCK[0],
            "side": rng.choice(["BUY", "SELL"]),
            "order_type": "LIMIT",
            "price": str(MOCK[1]),
            "quantity": str(MOCK[3] * rng.randint(10, 100)),
        },
        {  # one-cancels-the-other: take the profit above the mid, stop the loss below
            "method": "order.oco",
            "symbol": "BTC-USD",
            "side": "SELL",
            "quantity": str(btc_lot * 10),
            "price": str(btc_mid + 12 * btc_tick),
            "stop_price": str(btc_mid - 30 * btc_tick),
        },
        {  # an entry near the mid; its fills place a take-profit and a stop-loss
            "method": "order.bracket",
            "symbol": "BTC-USD",
            "side": "BUY",
            "quantity": str(btc_lot * 10),
            "price": str(btc_mid + 2 * btc_tick),
            "take_profit_price": str(btc_mid + 14 * btc_tick),
            "stop_price": str(btc_mid - 30 * btc_tick),
        },
        INDEX,
        {"symbol": FIX, "side": "BUY", "order_type": "LIMIT", "price": "0.6",
         "quantity": str(rng.randint(20, 100))},
        {"symbol": FIX, "side": "SELL", "order_type": "LIMIT", "price": "0.45",
         "quantity": str(rng.randint(20, 100))},
    ]
    twap = {"symbol": "BTC-USD", "side": rng.choice(["BUY", "SELL"]), "algo": "TWAP",
            "quantity": str(btc_lot * 100), "duration_ms": int(min(seconds / 2, 10) * 1000),
            "slice_interval_ms": 1000}
    twap["limit_price"] = str(btc_mid + 20 * btc_tick if twap["side"] == "BUY" else btc_mid - 20 * btc_tick)
    await fire(trader, place_algo(trader, stats, twap))
    end = next_at = time.monotonic() + seconds
    next_at -= seconds
    while time.monotonic() < end:
        roll = rng.random()
        if specials and roll < 0.03:
            await fire(trader, place(trader, stats, specials.pop()))
        elif roll < 0.58:
            await fire(
                trader, place(trader, stats, limit(rng, rng.choice(["BTC-USD", "BTC-USD", "ETH-USD"])))
            )
        elif roll < 0.70:
            await fire(trader, place(trader, stats, limit(rng, "BTC-USD", crossing=True)))
        elif roll < 0.78:
            await fire(trader, place(trader, stats, market(rng, "BTC-USD")))
        elif trader.open_ids and trader.session is not None:
            victim = trader.open_ids.pop(rng.randrange(len(trader.open_ids)))
            await fire(trader, cancel(trader, victim))
        next_at += 1 / rate
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    for special in specials:
        await fire(trader, place(trader, stats, special))
    await asyncio.gather(*trader.tasks)


async def cancel_everything(trader: Trader) -> None:
    assert trader.session is not None
    for order_id, update in list(trader.algos.items()):
        if update["status"] == "WORKING" and update["sequence"]:
            with contextlib.suppress(ApiCallError):
                await trader.session.call("order.cancel", {"order_id": order_id})
    for order_id, last in list(trader.index.items()):
        if last.get("status") in (None, "WORKING"):
            with contextlib.suppress(ApiCallError):
                await trader.session.call("order.cancel", {"order_id": order_id})
    for order_id, seqs in list(trader.reports.items()):
        if seqs and trader.last(order_id)["status"] not in FINAL:
            with contextlib.suppress(ApiCallError):
                await trader.session.call("order.cancel", {"order_id": order_id})


async def settle(traders: list[Trader], timeout_s: float = 90.0) -> bool:
    """Cancel every open order until every reported order is final and no order awaits its first
    report; True when that happened within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await asyncio.gather(*(cancel_everything(t) for t in traders))
        await asyncio.sleep(2)
        if (
            all(t.last(o)["status"] in FINAL for t in traders for o in t.reports)
            and not any(t.sent for t in traders)
            and all(algo_ended(t) for t in traders)
            and all(ended(e) for t in traders for e in t.index.values())
        ):
            return True
    return False


def ended(event: dict[str, Any]) -> bool:
    """An index order's last event says it is over: no round to come, no child open."""
    return event.get("status") in ("CANCELED", "COMPLETED", "REJECTED") and event.get("open_children") == 0


def index_failures(trader: Trader) -> list[str]:
    """Each index order ended, and spent exactly its children's fills plus their fees."""
    failures = []
    for order_id, last in trader.index.items():
        if not ended(last):
            failures.append(f"{trader.account} index order {order_id} has not ended: {last}")
            continue
        children = [o for o in trader.reports if o.startswith(f"{order_id}/")]
        spent = sum(
            (D(rep["last_fill_quantity"]) * D(rep["last_fill_price"])
             for o in children for rep in trader.reports[o].values()
             if rep.get("last_fill_quantity") and D(rep["last_fill_quantity"]) > 0),
            D(0),
        ) + sum((D(trader.last(o)["fees"]) for o in children), D(0))
        if D(last["spent"]) != spent:
            failures.append(f"{trader.account} index order {order_id}: spent {last['spent']} != its "
                            f"children's fills and fees {spent}")
        print(f"{trader.account} index order {order_id}: quoted {trader.quoted.get(order_id)} units, "
              f"filled {plain(D(last['units']))} in {last['rounds']} rounds, spent "
              f"{plain(D(last['spent']))} of {plain(D(last['collateral_amount']))} USD, "
              f"{last['status'].lower()}")
    return failures


async def history(http: aiohttp.ClientSession, trader: Trader) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    before: str | None = None
    while True:
        path = "/api/v1/history?limit=500" + (f"&before={before}" if before else "")
        page = await trader.client.ok(http, "GET", path)
        for doc in page["orders"]:
            docs[doc["order_id"]] = doc
        before = page.get("next")
        if not before or not page["orders"]:
            return docs


def fills(trader: Trader) -> list[dict[str, Any]]:
    return [
        rep
        for seqs in trader.reports.values()
        for rep in seqs.values()
        if rep.get("last_fill_quantity") and D(rep["last_fill_quantity"]) > 0
    ]


def expected_balances(trader: Trader, inside: set[str]) -> tuple[dict[str, D], dict[str, D], dict[str, D]]:
    """Deposits + fills - fees per asset; the fees; and what outside counterparties paid in (+) or took
    (-): the external venues, and any account not in this demo (a trade not in `inside`, the trade ids
    both of whose sides are this demo's)."""
    balance: dict[str, D] = defaultdict(D, DEPOSITS)
    fees: dict[str, D] = defaultdict(D)
    external: dict[str, D] = defaultdict(D)
    for order_id, seqs in trader.reports.items():
        last = trader.last(order_id)
        base, quote = last["symbol"].split("-")
        sign = 1 if last["side"] == "BUY" else -1
        for rep in seqs.values():
            if rep.get("last_fill_quantity") and D(rep["last_fill_quantity"]) > 0:
                qty, price = D(rep["last_fill_quantity"]), D(rep["last_fill_price"])
                for asset, delta in ((base, sign * qty), (quote, -sign * qty * price)):
                    balance[asset] += delta
                    if last.get("venue") not in (None, "INTERNAL") or rep.get("trade_id") not in inside:
                        external[asset] += delta
        if last.get("fee_asset"):
            fees[last["fee_asset"]] += D(last["fees"])
            balance[last["fee_asset"]] -= D(last["fees"])
    return balance, fees, external


async def run(args: argparse.Namespace) -> int:
    creds = load_credentials(run_dir())
    base = args.gateway
    admin = GatewayClient(base, creds["admin"]["key_id"], creds["admin"]["secret"])
    stats = Stats()
    run_id = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession() as http:
        traders = await new_traders(http, admin, [f"demo-{run_id}-{i}" for i in range(args.traders)],
                                    args.in_flight)
        funded = ", ".join(f"{v} {k}" for k, v in DEPOSITS.items())
        print(f"demo {run_id}: {args.traders} traders, each funded with {funded}")
        async with sessions(http, traders) as market_data:
            tasks = [asyncio.create_task(listen(t, stats)) for t in traders]
            tasks.append(asyncio.create_task(watch_book(market_data, stats, "BTC-USD")))
            started = time.monotonic()

            async def report() -> None:
                last = 0
                while True:
                    await asyncio.sleep(1)
                    el = time.monotonic() - started
                    print(
                        f"t={el:5.1f}s orders {stats.placed:6d} ({stats.placed - last:4d}/s) refused "
                        f"{stats.refused:3d} acks {stats.acks:6d} fills {stats.fills:6d} "
                        f"ack p50 {stats.pct(50):6.1f} ms p99 {stats.pct(99):7.1f} ms | "
                        f"BTC-USD {stats.top()}",
                        flush=True,
                    )
                    last = stats.placed

            reporter = asyncio.create_task(report())
            await asyncio.gather(
                *(trade(t, stats, args.seconds, args.rate, args.seed + i) for i, t in enumerate(traders))
            )
            print("traffic done; canceling every open order and waiting until every order is final")
            await settle(traders)
            reporter.cancel()
            for task in tasks:
                task.cancel()
            return await checks(http, traders, stats, time.monotonic() - started)


async def new_traders(
    http: aiohttp.ClientSession, admin: GatewayClient, accounts: list[str], in_flight: int
) -> list[Trader]:
    """Fresh accounts with their own API keys, each funded with DEPOSITS through the admin API;
    returns once every deposit shows in the gateway's balances, so trading starts funded."""
    traders: list[Trader] = []
    for account in accounts:
        made = await admin.ok(http, "POST", "/api/v1/admin/accounts", {"account_id": account})
        for asset, amount in DEPOSITS.items():
            await admin.ok(
                http,
                "POST",
                "/api/v1/admin/deposits",
                {"account_id": account, "asset": asset, "amount": str(amount)},
            )
        trader = Trader(account, GatewayClient(admin.base, made["key_id"], made["secret"]))
        trader.slots = asyncio.Semaphore(in_flight)
        traders.append(trader)
    for t in traders:
        for _ in range(120):
            got = (await t.client.ok(http, "GET", "/api/v1/balances"))["balances"]
            if all(D(got.get(a, {}).get("free", "0")) == v for a, v in DEPOSITS.items()):
                break
            await asyncio.sleep(0.5)
    return traders


@contextlib.asynccontextmanager
async def sessions(http: aiohttp.ClientSession, traders: list[Trader]) -> AsyncIterator[Session]:
    """Every trader's logged-in session with its user stream, plus one market-data session."""
    async with contextlib.AsyncExitStack() as stack:
        for t in traders:
            t.session = await stack.enter_async_context(t.client.session(http))
            await t.session.call("subscribe", {"stream": "user"})
        yield await stack.enter_async_context(traders[0].client.session(http))


async def checks(http: aiohttp.ClientSession, traders: list[Trader], stats: Stats, elapsed: float) -> int:
    failures: list[str] = []
    orders = sum(len(t.reports) for t in traders)
    print(
        f"\n{stats.placed} orders placed in {elapsed:.1f}s ({stats.placed / elapsed:.0f}/s), {orders} orders "
        f"reported (basket children included), {stats.fills} fills; order-to-ack p50 {stats.pct(50):.1f} ms, "
        f"p99 {stats.pct(99):.1f} ms"
    )
    for t in traders:
        for order_id, seqs in t.reports.items():
            if sorted(seqs) != list(range(1, max(seqs) + 1)):
                failures.append(f"{t.account} {order_id}: report sequence numbers {sorted(seqs)} have a gap")
        if any(t.last(o)["status"] not in FINAL for o in t.reports):
            failures.append(f"{t.account}: orders still open after cancel-all")
    totals: dict[str, D] = defaultdict(D)
    sides = Counter(f["trade_id"] for t in traders for f in fills(t))
    inside = {trade for trade, n in sides.items() if n == 2}  # both sides are this demo's traders
    outside = sum(1 for n in sides.values() if n == 1)
    if outside:
        print(
            f"{outside} fills were against accounts outside this demo (or an external venue); "
            "conservation counts them as outside flows"
        )
    for t in traders:
        want, fees, external = expected_balances(t, inside)
        for _ in range(60):
            got = (await t.client.ok(http, "GET", "/api/v1/balances"))["balances"]
            have = {a: D(b["free"]) + D(b["held"]) for a, b in got.items()}
            held = {a: D(b["held"]) for a, b in got.items() if D(b["held"])}
            if all(have.get(a, D(0)) == v for a, v in want.items()) and not held:
                break
            await asyncio.sleep(0.5)
        for asset, value in want.items():
            if have.get(asset, D(0)) != value:
                failures.append(
                    f"{t.account} {asset}: balance {have.get(asset)} != deposits + fills - fees {value}"
                )
        if held:
            failures.append(f"{t.account}: still held after every order ended: {held}")
        for asset in DEPOSITS:
            totals[asset] += (
                have.get(asset, D(0)) + fees.get(asset, D(0)) - external.get(asset, D(0)) - DEPOSITS[asset]
            )
    for asset, diff in totals.items():
        if diff:
            failures.append(f"conservation: {asset} is off by {diff} across the traders")
    missing = 0
    for t in traders:
        docs: dict[str, dict[str, Any]] = {}
        for _ in range(60):
            docs = await history(http, t)
            if all(o in docs and docs[o]["status"] == t.last(o)["status"] for o in t.reports):
                break
            await asyncio.sleep(0.5)
        for order_id in t.reports:
            last, doc = t.last(order_id), docs.get(order_id)
            if doc is None:
                missing += 1
            elif (doc["status"], D(doc["filled_quantity"])) != (last["status"], D(last["filled_quantity"])):
                failures.append(
                    f"history {order_id}: {doc['status']} {doc['filled_quantity']} != report "
                    f"{last['status']} {last['filled_quantity']}"
                )
    if missing:
        failures.append(f"history: {missing} orders missing from MongoDB")
    failures += linked_orders(traders)
    failures += twap_checks(traders)
    for t in traders:
        failures += index_failures(t)
    checked = [
        "report sequences gap-free",
        "ledger per trader exact",
        "nothing held",
        "conservation (outside counterparties as flows)",
        "MongoDB history == last reports",
        "order lists linked (one OCO leg traded at most; bracket exits within the entry's fills)",
        "TWAP parents == their children",
        "index orders ended, spent == their children's fills + fees",
    ]
    if failures:
        print("END-STATE CHECKS FAILED:")
        for f in failures[:50]:
            print(f"  - {f}")
        return 1
    print("end-state checks passed: " + "; ".join(checked))
    return 0


def linked_orders(traders: list[Trader]) -> list[str]:
    """What breaks an order list's link: both legs of an OCO traded; a bracket's exits more than its entry
    filled, both exits traded, or an exit traded while the entry still rests."""
    failures = []
    for t in traders:
        for list_id, kind in t.lists.items():
            last = {n: t.last(f"{list_id}/{n}") for n in range(3) if t.reports.get(f"{list_id}/{n}")}
            traded = [n for n, rep in last.items() if D(rep["filled_quantity"])]
            exits = [n for n in traded if n > 0] if kind == "BRACKET" else traded
            if len(exits) > 1:
                failures.append(f"{t.account} {kind} {list_id}: orders {exits} both traded")
            if kind == "BRACKET" and 0 in last:
                entry = D(last[0]["filled_quantity"])
                for n in (1, 2):
                    if n in last and D(last[n]["quantity"]) > entry:
                        failures.append(f"{t.account} bracket {list_id}: exit {n} for {last[n]['quantity']}, "
                                        f"the entry filled {entry}")
    return failures


def twap_checks(traders: list[Trader]) -> list[str]:
    """Each TWAP parent ended, and its filled quantity and slices sent are what its children reported."""
    failures = []
    for t in traders:
        for parent, update in t.algos.items():
            kids = [o for o in t.reports if o.startswith(parent + "/")]
            filled = sum((D(t.last(o)["filled_quantity"]) for o in kids), D(0))
            if update["status"] == "WORKING":
                failures.append(f"TWAP {parent}: still working after the demo")
                continue
            print(f"TWAP {parent}: {update['status']} {plain(D(update['filled_quantity']))} of "
                  f"{plain(D(update['quantity']))} in {update['slices_sent']} slices, average price "
                  f"{update['average_price']} against the window's TWAP {update['window_twap']}")
            sent = update["slices_sent"]
            if D(update["filled_quantity"]) != filled or sent != len(kids):
                failures.append(f"TWAP {parent}: filled {update['filled_quantity']} in {sent} slices, its "
                                f"children reported {filled} in {len(kids)}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="orderstream demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--traders", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=12.0, help="actions per second per trader")
    parser.add_argument("--in-flight", type=int, default=8, help="requests a trader has out at once")
    parser.add_argument("--seed", type=int, default=7)
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

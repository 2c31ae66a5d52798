"""TWAP parent orders through the gateway, on the whole platform: slice times, fills, the average price
against the window's TWAP, a router killed mid-way (the schedule goes on, no slice twice), a cancel
mid-way, and the ledger exact at the end (time scaled: a 12 s window of 1 s slices)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest

from orderstream.client import ApiCallError, Session
from tests.e2e.test_platform import client, settled, total

pytestmark = pytest.mark.integration

S = 1_000_000_000


class Stream:
    """Every user-stream frame of a session, kept as it comes."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.frames: list[dict[str, Any]] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            self.frames.append(await self.session.events.get())

    def of(self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda d: True) -> list[dict[str, Any]]:
        return [f["data"] for f in self.frames if f.get("type") == kind and where(f["data"])]

    async def until(self, kind: str, where: Callable[[dict[str, Any]], bool], timeout: float = 90) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of(kind, where)
            if found:
                return found[-1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} as wanted in {timeout} s; last frames {self.frames[-5:]}")


def children(stream: Stream, parent: str) -> dict[str, list[dict[str, Any]]]:
    """Each child's execution reports, by child id."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rep in stream.of("execution_report", lambda d: d["order_id"].startswith(parent + "/")):
        out.setdefault(rep["order_id"], []).append(rep)
    return out


def fills(reports: list[dict[str, Any]]) -> tuple[D, D, D]:
    """(quantity, notional, fees) of one order's reports: each report counted once by its sequence."""
    seen = {rep["sequence"]: rep for rep in reports}
    qty = sum((D(r["last_fill_quantity"]) for r in seen.values() if r["last_fill_quantity"]), D(0))
    filled = [r for r in seen.values() if r["last_fill_quantity"]]
    notional = sum((D(r["last_fill_quantity"]) * D(r["last_fill_price"]) for r in filled), D(0))
    fees = max((D(r["fees"]) for r in seen.values()), default=D(0))
    return qty, notional, fees


async def kill_router(platform: dict[str, Any]) -> None:
    """kill -9 the router; return once the supervisor runs a new one."""
    services = platform["run"] / "services.json"
    pid = json.loads(services.read_text())["router"]["pid"]
    os.kill(pid, 9)
    for _ in range(400):
        await asyncio.sleep(0.05)
        if json.loads(services.read_text())["router"]["pid"] != pid:
            return
    raise AssertionError("the router was not restarted")


async def test_a_twap_keeps_its_schedule_through_a_router_kill_and_the_ledger_stays_exact(
    platform: dict[str, Any],
) -> None:
    alice, bob = client(platform, "alice"), client(platform, "bob")
    run = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession() as http, alice.session(http) as sa, bob.session(http) as sb:
        pair = {"a": alice, "b": bob}
        before = {w: (await c.ok(http, "GET", "/api/v1/balances"))["balances"] for w, c in pair.items()}
        for s in (sa, sb):
            await s.call("subscribe", {"stream": "user"})
        a, b = Stream(sa), Stream(sb)
        ladder = []
        for i, price in enumerate(("30000", "30005", "30010", "30015")):  # bob's liquidity: 0.8 BTC
            placed = await sb.call("order.place", {"client_order_id": f"l{run}-{i}", "symbol": "BTC-USD",
                                                   "side": "SELL", "quantity": "0.2", "price": price})
            ladder.append(placed["order_id"])
        for oid in ladder:
            await b.until("execution_report", lambda d, o=oid: d["order_id"] == o and d["status"] != "NEW")

        with pytest.raises(ApiCallError) as refused:  # field-level refusals, before anything is sent
            await sa.call("order.algo", {"client_order_id": f"x{run}", "symbol": "BTC-USD", "side": "BUY",
                                         "algo": "TWAP", "quantity": "0.6", "duration_ms": 12000,
                                         "slice_interval_ms": 1000})
        assert refused.value.code == 40001 and refused.value.details["field"] == "limit_price"
        status, _, body = await alice.call(http, "POST", "/api/v1/algo-orders", {
            "client_order_id": f"x{run}", "symbol": "BTC-USD", "side": "BUY", "algo": "VWAP",
            "quantity": "0.6", "limit_price": "30100", "duration_ms": 12000, "slice_interval_ms": 1000,
            "participation": "1.5"})
        assert status == 400 and body["error"]["details"]["field"] == "participation"

        start = time.time_ns() + S // 2
        parent = await sa.call("order.algo", {
            "client_order_id": f"t{run}", "symbol": "BTC-USD", "side": "BUY", "algo": "TWAP",
            "quantity": "0.6", "limit_price": "30100", "start_at": start, "duration_ms": 12000,
            "slice_interval_ms": 1000})
        pid = parent["order_id"]
        again = await sa.call("order.algo", {  # the same client_order_id: the same parent, not a second
            "client_order_id": f"t{run}", "symbol": "BTC-USD", "side": "BUY", "algo": "TWAP",
            "quantity": "0.6", "limit_price": "30100", "start_at": start, "duration_ms": 12000,
            "slice_interval_ms": 1000})
        assert again == {**parent, "duplicate": True}

        def mine(d: dict[str, Any]) -> bool:
            return bool(d["order_id"] == pid)

        await a.until("algo_order_updated", lambda d: mine(d) and d["slices_sent"] >= 4, timeout=30)
        killed_at = time.time_ns()
        await kill_router(platform)
        done = await a.until("algo_order_updated", lambda d: mine(d) and d["status"] != "WORKING", 120)

        # the parent: all filled, every slice once, the average price of its children
        assert (done["status"], done["reason"], D(done["filled_quantity"])) == ("DONE", "FILLED", D("0.6"))
        kids = children(a, pid)
        assert sorted(kids) == sorted(f"{pid}/{k}" for k in sorted(int(c.rsplit("/", 1)[1]) for c in kids))
        assert len(kids) == done["slices_sent"]
        for cid, reps in kids.items():  # one order each (a report may come twice: the same event id)
            events = {r["event_id"]: r["sequence"] for r in reps}
            assert sorted(events.values()) == list(range(1, len(events) + 1)), (cid, reps)
        per_child = {cid: fills(reps) for cid, reps in kids.items()}
        qty = sum((f[0] for f in per_child.values()), D(0))
        notional = sum((f[1] for f in per_child.values()), D(0))
        a_fees = sum((f[2] for f in per_child.values()), D(0))
        assert qty == D("0.6")
        assert D(done["average_price"]) == (notional / qty).quantize(D("1e-18"))

        # slice times: child k no earlier than start + k s; before the kill, within a second of it
        first_report = {int(c.rsplit("/", 1)[1]): min(x["ts_event"] for x in rs) for c, rs in kids.items()}
        lags = {k: (ts - (start + k * S)) / 1e9 for k, ts in sorted(first_report.items())}
        print(f"slice lags (s): {lags}; router killed at +{(killed_at - start) / 1e9:.2f} s")
        print(f"average price {done['average_price']} against the window's TWAP {done['window_twap']} "
              f"and VWAP {done['window_vwap']}")
        assert all(lag >= 0 for lag in lags.values())
        assert all(lag < 1.0 for k, lag in lags.items() if start + k * S < killed_at - S // 2)
        assert 0 in lags and max(lags) <= 12  # slice indexes inside the window's 13
        # alice's children made the only BTC-USD trades of the window, at bob's ladder prices
        for benchmark in ("window_twap", "window_vwap", "average_price"):
            assert D(30000) <= D(done[benchmark]) <= D(30015), done

        # ledger: the fills and fees each side reports, exactly; nothing left held once bob cancels
        for oid in ladder:
            with contextlib.suppress(ApiCallError):  # filled already
                await sb.call("order.cancel", {"order_id": oid})
        b_fees = D(0)
        for oid in ladder:
            await b.until("execution_report", lambda d, oid=oid: d["order_id"] == oid
                          and d["status"] in ("FILLED", "CANCELED"))
            b_fees += fills(b.of("execution_report", lambda d, oid=oid: d["order_id"] == oid))[2]
        want = {
            ("a", "BTC"): total(before["a"], "BTC") + qty,
            ("a", "USD"): total(before["a"], "USD") - notional - a_fees,
            ("b", "BTC"): total(before["b"], "BTC") - qty,
            ("b", "USD"): total(before["b"], "USD") + notional - b_fees,
        }
        await settled(http, pair, want)
        for c in (alice, bob):  # a cancel's release is written with its own report: wait for it too
            for _ in range(60):
                balances = (await c.ok(http, "GET", "/api/v1/balances"))["balances"]
                if D(balances["BTC"]["held"]) == D(balances["USD"]["held"]) == 0:
                    break
                await asyncio.sleep(0.5)
            assert D(balances["BTC"]["held"]) == D(balances["USD"]["held"]) == 0, balances
        a.task.cancel()
        b.task.cancel()


async def test_a_twap_canceled_mid_way_sends_no_more_slices_and_holds_nothing(
    platform: dict[str, Any],
) -> None:
    alice, bob = client(platform, "alice"), client(platform, "bob")
    run = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession() as http, alice.session(http) as sa:
        await sa.call("subscribe", {"stream": "user"})
        a = Stream(sa)
        ask = await bob.ok(http, "POST", "/api/v1/orders", {"client_order_id": f"c{run}", "symbol": "ETH-USD",
                                                             "side": "BUY", "quantity": "5", "price": "2000"})
        parent = await sa.call("order.algo", {
            "client_order_id": f"c{run}", "symbol": "ETH-USD", "side": "SELL", "algo": "TWAP",
            "quantity": "1", "duration_ms": 10000, "slice_interval_ms": 1000})
        pid = parent["order_id"]
        await a.until("algo_order_updated", lambda d: d["order_id"] == pid and d["slices_sent"] >= 2, 30)
        answer = await alice.ok(http, "DELETE", f"/api/v1/orders/{pid}")
        assert answer == {"order_id": pid, "cancel": "requested"}
        end = await a.until("algo_order_updated", lambda d: d["order_id"] == pid and d["status"] != "WORKING")
        assert end["status"] == "CANCELED" and end["next_slice_at"] is None
        sent = end["slices_sent"]
        assert 2 <= sent < 11 and D("0.18") <= D(end["filled_quantity"]) < 1
        await asyncio.sleep(2.5)  # two more slices would have been due
        assert len(children(a, pid)) == sent
        with pytest.raises(ApiCallError) as refused:
            await sa.call("order.replace", {"order_id": pid, "quantity": "2"})
        assert refused.value.code == 40904
        await bob.ok(http, "DELETE", f"/api/v1/orders/{ask['order_id']}")
        for _ in range(60):
            eth = (await alice.ok(http, "GET", "/api/v1/balances"))["balances"]["ETH"]
            if D(eth["held"]) == 0:
                break
            await asyncio.sleep(0.5)
        assert D(eth["held"]) == 0, eth
        a.task.cancel()


async def test_a_vwap_takes_its_participation_of_what_others_trade(platform: dict[str, Any]) -> None:
    """A VWAP buy at 50% participation while alice's own IOC buys trade 0.02 BTC every 200 ms: each
    slice takes half of what traded since the last one, so the parent ends short of its quantity."""
    alice, bob = client(platform, "alice"), client(platform, "bob")
    run = uuid.uuid4().hex[:6]
    async with aiohttp.ClientSession() as http, alice.session(http) as sa:
        await sa.call("subscribe", {"stream": "user"})
        a = Stream(sa)
        ask = await bob.ok(http, "POST", "/api/v1/orders", {
            "client_order_id": f"v{run}", "symbol": "BTC-USD", "side": "SELL", "quantity": "2",
            "price": "30000"})
        parent = await sa.call("order.algo", {
            "client_order_id": f"v{run}", "symbol": "BTC-USD", "side": "BUY", "algo": "VWAP",
            "quantity": "1", "limit_price": "30000", "duration_ms": 4000, "slice_interval_ms": 500,
            "participation": "0.5"})
        pid = parent["order_id"]
        others = D(0)
        deadline = time.monotonic() + 4
        n = 0
        while time.monotonic() < deadline:  # the market: alice's own plain orders, not the parent's
            n += 1
            await sa.call("order.place", {
                "client_order_id": f"v{run}-{n}", "symbol": "BTC-USD", "side": "BUY", "order_type": "LIMIT",
                "time_in_force": "IOC", "quantity": "0.02", "price": "30000"})
            others += D("0.02")
            await asyncio.sleep(0.2)
        end = await a.until("algo_order_updated", lambda d: d["order_id"] == pid and d["status"] != "WORKING")
        kids = children(a, pid)
        asked = sum((D(reps[0]["quantity"]) for reps in kids.values()), D(0))
        print(f"VWAP: others traded {others}, the parent's {len(kids)} children asked {asked}, filled "
              f"{end['filled_quantity']} at {end['average_price']} (window VWAP {end['window_vwap']})")
        assert (end["status"], end["reason"]) == ("DONE", "WINDOW_ENDED")
        assert D("0.1") <= D(end["filled_quantity"]) == asked <= others / 2
        await bob.ok(http, "DELETE", f"/api/v1/orders/{ask['order_id']}")
        a.task.cancel()

"""The router's FIX venue adapter against a FIX engine that is not ours: QuickFIX/J's
example Executor (tests/fix_executor.py), on the real broker with the order services.

Between the router and the Executor runs a relay the test can hold or cut in either
direction, so "mid-order" is exact: the order reached the venue and its reports did not
reach the router, or the order never left the router's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from orderstream.common import records as r
from tests.conftest import Infra
from tests.e2e.stack import Stack, instrument
from tests.fix_executor import Executor
from tests.kafka_tools import eventually, free_port

pytestmark = pytest.mark.integration

TO_VENUE, TO_ROUTER = "to_venue", "to_router"


class Wire:
    """A TCP relay between the router and the venue: `hold` a direction (its bytes wait),
    `cut` every connection (held bytes are lost, as with a socket that dies)."""

    def __init__(self, venue_port: int) -> None:
        self.venue_port = venue_port
        self.held: dict[str, list[bytes] | None] = {TO_VENUE: None, TO_ROUTER: None}
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.venue_port)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pump(reader, up_writer, TO_VENUE),
                             self._pump(up_reader, writer, TO_ROUTER), return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: str) -> None:
        try:
            while data := await reader.read(65536):
                held = self.held[way]
                if held is not None:
                    held.append(data)
                else:
                    writer.write(data)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def hold(self, way: str) -> None:
        self.held[way] = []

    def cut(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()
        self.held = {TO_VENUE: None, TO_ROUTER: None}

    def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


@contextlib.asynccontextmanager
async def fix_stack(infra: Infra, tmp: Path) -> AsyncIterator[tuple[Stack, Executor, Wire]]:
    venue = Executor(tmp / "executor", free_port())
    venue.start()
    wire = Wire(venue.port)
    await wire.start()
    config = {"FIX-EXEC": {"port": wire.port, "store": str(tmp / "router-fix"), "heartbeat_s": 5,
                           "reconnect_s": 0.2, "reconnect_max_s": 1.0}}
    stack = Stack(infra.kafka_bootstrap, tmp, router_env={
        "ORDERSTREAM_ROUTER_FIX_VENUES": json.dumps(config),
        "ORDERSTREAM_ROUTER_VENUE_TIMEOUT_S": "1",
        "ORDERSTREAM_ROUTER_VENUE_ATTEMPTS": "2",
        "ORDERSTREAM_ROUTER_RECONCILE_INTERVAL_S": "0.5",
    })
    try:
        await stack.start([instrument("ADA-USD", venue="FIX-EXEC", tick="0.0001", lot="1")])
        await stack.deposit("A", "USD", "1000")
        await stack.until("deposit", lambda: stack.balances())
        await eventually("the FIX session logs on", lambda: session_is(stack, True))
        yield stack, venue, wire
    finally:
        await stack.stop()
        wire.close()
        venue.stop()


async def router_health(stack: Stack) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.ports['router']}/healthz"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def fix_session(stack: Stack) -> dict[str, Any]:
    try:
        session: dict[str, Any] = (await router_health(stack))["fix_sessions"]["FIX-EXEC"]
    except aiohttp.ClientError:
        return {}
    return session


async def session_is(stack: Stack, logged_on: bool) -> bool:
    return (await fix_session(stack)).get("logged_on") is logged_on


def statuses(stack: Stack, order_id: str) -> list[str]:
    return [rep.status.value for rep in stack.reports(order_id)]


def trades(stack: Stack) -> list[str]:
    """The trade id of every distinct report of a fill (a report seen twice is one report)."""
    return list({rep.event_id: rep.trade_id for rep in stack.seen["execution.reports"]
                 if isinstance(rep, r.ExecutionReport) and rep.trade_id}.values())


async def filled_once(stack: Stack, o: r.SubmitOrder, price: str = "0.5") -> r.ExecutionReport:
    rep = await stack.status(o.order_id, "FILLED")
    assert statuses(stack, o.order_id) == ["ACCEPTED", "FILLED"], stack.reports(o.order_id)
    assert rep.last_fill_price == D(price) and rep.filled_quantity == o.quantity
    return rep


async def test_an_order_fills_at_the_executor_settles_exactly_and_a_refused_cancel_says_why(
    infra: Infra, tmp_path: Path
) -> None:
    async with fix_stack(infra, tmp_path) as (stack, _, _):
        buy = await stack.place(stack.order("A", "ADA-USD", "BUY", "100", "0.6"))  # marketable: fills at 0.50
        rep = await filled_once(stack, buy)
        assert rep.venue == "FIX-EXEC" and rep.fees == D("0.1")  # 0.2% of 50 USD, taker
        await stack.until("settlement", lambda: stack.balances().get(("A", "ADA")) == (D(100), D(0)))
        assert stack.balances()[("A", "USD")] == (D("949.9"), D(0))  # 1000 - 50 - 0.1: nothing held back

        rest = await stack.place(stack.order("A", "ADA-USD", "BUY", "100", "0.4"))  # below 0.50: rests
        await stack.status(rest.order_id, "ACCEPTED")
        await stack.until("the hold", lambda: stack.balances()[("A", "USD")] == (D("909.82"), D("40.08")))
        await stack.cancel(rest)  # the Executor has no cancel handler: BusinessMessageReject

        def refusal() -> r.OrderRejected | None:
            return next((e for e in stack.seen["order.events"] if isinstance(e, r.OrderRejected)
                         and e.order_id == rest.order_id and e.rejected_command == "CancelOrder"), None)

        refused = await stack.until("the cancel's refusal", refusal)
        assert refused.reason == "VENUE_CANCEL_UNSUPPORTED"
        assert "FIX-EXEC refused the cancel: Unsupported Message Type" in refused.message
        # the client's report of the refusal: the order lives on at the venue, its funds held
        assert [(x.status.value, x.reason) for x in stack.reports(rest.order_id)] == [
            ("ACCEPTED", None), ("ACCEPTED", "VENUE_CANCEL_UNSUPPORTED")]
        assert stack.balances()[("A", "USD")] == (D("909.82"), D("40.08"))

        # a replace goes out as OrderCancelReplaceRequest: refused the same way, and the extra
        # collateral held for it is given back
        await stack.send("order.commands", "A", r.ReplaceOrder(
            command_id=f"rp-{stack.ids()}", ts_event=rest.ts_event, account_id="A", order_id=rest.order_id,
            client_order_id=rest.client_order_id, symbol="ADA-USD", quantity=D(150), price=None))

        def replace_refused() -> r.OrderRejected | None:
            return next((e for e in stack.seen["order.events"] if isinstance(e, r.OrderRejected)
                         and e.order_id == rest.order_id and e.rejected_command == "ReplaceOrder"), None)

        refused = await stack.until("the replace's refusal", replace_refused)
        assert refused.reason == "VENUE_REPLACE_UNSUPPORTED"
        assert "FIX-EXEC refused the replace: Unsupported Message Type" in refused.message
        held = (D("909.82"), D("40.08"))
        await stack.until("the hold back", lambda: stack.balances()[("A", "USD")] == held)
        assert not any(stack.dead_letters().values())


async def test_the_executor_killed_mid_order_loses_and_doubles_no_fill(infra: Infra, tmp_path: Path) -> None:
    async with fix_stack(infra, tmp_path) as (stack, venue, wire):
        # 1. the Executor fills an order, its reports never reach the router, and it dies
        wire.hold(TO_ROUTER)
        first = await stack.place(stack.order("A", "ADA-USD", "BUY", "10", "0.6"))
        await asyncio.sleep(2)
        assert statuses(stack, first.order_id) == []
        venue.kill()
        wire.cut()
        venue.start()  # from its store: it resends the reports when the router asks
        await filled_once(stack, first)

        # 2. an order that never left the router's socket when the Executor died
        await eventually("the FIX session logs on again", lambda: session_is(stack, True))
        wire.hold(TO_VENUE)
        second = await stack.place(stack.order("A", "ADA-USD", "BUY", "10", "0.6"))
        await asyncio.sleep(1)
        venue.kill()
        wire.cut()
        venue.start()  # it sees the router's numbers jump and asks for the order again
        await filled_once(stack, second)

        assert sorted(trades(stack)) == sorted(set(trades(stack)))  # no fill twice
        await stack.until("settlement", lambda: stack.balances().get(("A", "ADA")) == (D(20), D(0)))
        assert stack.balances()[("A", "USD")] == (D("989.98"), D(0))  # 1000 - 2 x (5 + 0.01)
        assert not any(stack.dead_letters().values())


async def test_the_router_killed_mid_order_keeps_its_sequence_numbers(infra: Infra, tmp_path: Path) -> None:
    async with fix_stack(infra, tmp_path) as (stack, venue, wire):
        warm = await stack.place(stack.order("A", "ADA-USD", "BUY", "10", "0.6"))
        await filled_once(stack, warm)
        before = await fix_session(stack)

        wire.hold(TO_ROUTER)  # the Executor fills; the router dies before it hears
        o = await stack.place(stack.order("A", "ADA-USD", "BUY", "10", "0.6"))
        await asyncio.sleep(2)
        stack.kill("router")
        wire.cut()
        await stack.start_service("router")
        await filled_once(stack, o)
        after = await fix_session(stack)
        # the restarted router went on from the numbers it had, and the Executor took them
        assert after["next_out"] > before["next_out"] and after["next_in"] > before["next_in"]
        assert "MsgSeqNum too low" not in venue.log_tail()
        assert sorted(trades(stack)) == sorted(set(trades(stack)))
        await stack.until("settlement", lambda: stack.balances().get(("A", "ADA")) == (D(20), D(0)))
        assert stack.balances()[("A", "USD")] == (D("989.98"), D(0))

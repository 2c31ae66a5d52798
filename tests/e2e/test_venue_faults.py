"""The router and an external venue never disagree for good (issue 15, hole 6).

A place or cancel the venue carried out but did not answer (answer lost, or later than the
router's timeout) leaves the order as the venue has it, not REJECTED; a cancel stored but not
sent when the router died is sent by the restarted router.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from orderstream.common import records as r
from tests.conftest import Infra
from tests.e2e.stack import Stack, instrument
from tests.kafka_tools import eventually

pytestmark = pytest.mark.integration


async def health(stack: Stack) -> dict[str, object]:
    url = f"http://127.0.0.1:{stack.ports['router']}/healthz"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        body: dict[str, object] = await resp.json()
        return body


async def resting_order(stack: Stack) -> r.SubmitOrder:
    """Start the stack and place a funded buy at the mock venue; it rests there (accepted)."""
    await stack.start([instrument("MOCK-USD", venue="MOCK", tick="0.01", lot="0.01")])
    await stack.deposit("A", "USD", "100000")
    await stack.until("deposit", lambda: stack.balances())
    o = await stack.place(stack.order("A", "MOCK-USD", "BUY", "1", "100"))
    await stack.status(o.order_id, "ACCEPTED")
    return o


def statuses(stack: Stack, order_id: str) -> list[str]:
    return [rep.status.value for rep in stack.reports(order_id)]


@pytest.mark.parametrize("fault", [
    {"lost_answers": 1.0},  # the venue acts, the answer never comes
    {"late_answers": 1.0, "late_ms": 600},  # the venue acts, the answer comes after the timeout
])
async def test_an_unanswered_venue_call_leaves_the_order_as_the_venue_has_it(
    infra: Infra, tmp_path: Path, fault: dict[str, float]
) -> None:
    venue = {"fill": False, "latency_ms": 1, **fault}
    stack = Stack(infra.kafka_bootstrap, tmp_path, router_env={
        "ORDERSTREAM_ROUTER_MOCK_VENUES": json.dumps({"MOCK": venue}),
        "ORDERSTREAM_ROUTER_VENUE_TIMEOUT_S": "0.2",
        "ORDERSTREAM_ROUTER_VENUE_ATTEMPTS": "2",
        "ORDERSTREAM_ROUTER_RECONCILE_INTERVAL_S": "0.3",
    })
    try:
        o = await resting_order(stack)
        # every try went unanswered, and the router asked the venue instead of deciding

        async def asked() -> bool:
            h = await health(stack)
            return h["venue_retries"] == {"MOCK": 1} and h["venue_orders_unsure"] == 0

        await eventually("the venue asked", asked)
        assert statuses(stack, o.order_id) == ["ACCEPTED"]  # before: REJECTED, while it lived on at the venue

        await stack.cancel(o)  # unanswered too: the venue canceled all the same, and says so
        await stack.status(o.order_id, "CANCELED")
        assert statuses(stack, o.order_id) == ["ACCEPTED", "CANCELED"], stack.reports(o.order_id)
        await stack.until("release", lambda: stack.balances()[("A", "USD")][1] == 0)
    finally:
        await stack.stop()


async def test_a_cancel_stored_but_not_sent_is_sent_by_the_restarted_router(
    infra: Infra, tmp_path: Path
) -> None:
    def venue(latency_ms: float) -> dict[str, str]:
        config = {"fill": False, "latency_ms": latency_ms, "journal": str(tmp_path / "mock.jsonl")}
        return {"ORDERSTREAM_ROUTER_MOCK_VENUES": json.dumps({"MOCK": config})}

    stack = Stack(infra.kafka_bootstrap, tmp_path, router_env=venue(2000))
    try:
        o = await resting_order(stack)

        async def calling() -> bool:
            return (await health(stack))["venue_calls_in_flight"] == {"MOCK": {"cancel": 1}}

        await stack.cancel(o)
        await eventually("the cancel's venue call", calling)  # stored, and its call under way (2 s)
        stack.kill("router")  # before the venue heard of the cancel
        stack.env["router"].update(venue(1))
        await stack.start_service("router")
        await stack.status(o.order_id, "CANCELED")  # before: the restarted router took it for a repeat
        assert statuses(stack, o.order_id) == ["ACCEPTED", "CANCELED"]
        assert [line for line in (tmp_path / "mock.jsonl").read_text().splitlines() if "CANCELED" in line]
    finally:
        await stack.stop()

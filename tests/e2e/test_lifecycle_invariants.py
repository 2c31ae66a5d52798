"""A random workload across hard kills of every service at random points: the invariants hold.

The checks do not reuse the services' own formulas: each order's reports must be numbered
1..n without a gap and add up (fills to the filled quantity), holds are recomputed from the
instrument's fees here, every dead-letter topic stays empty, and the open orders must be the
matcher's book.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path

import pytest

from orderstream.common import records as r
from orderstream.common.trading import TERMINAL
from tests.conftest import Infra
from tests.e2e.stack import SERVICES, Stack, instrument

pytestmark = pytest.mark.integration

ACCOUNTS = ("A", "B", "C")
DEPOSITS = {"USD": D(1_000_000), "BTC": D(50)}
ORDERS = 240


def kill_plan(seed: int) -> dict[int, str]:
    """Each service killed once, in a random order, at random points of the workload."""
    rng = random.Random(seed)
    points = sorted(rng.sample(range(20, ORDERS - 20), len(SERVICES)))
    return dict(zip(points, rng.sample(SERVICES, len(SERVICES)), strict=True))


def report_gaps(reports: list[r.ExecutionReport]) -> str | None:
    """What is wrong with one order's distinct reports (sorted by sequence), or None.

    Each change of the order has the next sequence number; the answer to a refused cancel or
    replace repeats the order's current number and state (the order itself did not change)."""
    sequences = sorted({x.sequence for x in reports})
    if sequences != list(range(1, len(sequences) + 1)):
        return f"sequences {[x.sequence for x in reports]}"
    for n in sequences:
        states = {(x.status, x.filled_quantity, x.remaining_quantity) for x in reports if x.sequence == n}
        if len(states) > 1:
            return f"two states with sequence {n}: {states}"
    by_trade = {x.trade_id: x.last_fill_quantity or D(0) for x in reports if x.trade_id}
    fills = sum(by_trade.values(), D(0))
    last = reports[-1]
    if fills != last.filled_quantity:
        return f"fills add up to {fills}, the report says {last.filled_quantity}"
    alive_or_filled = last.status not in TERMINAL or last.status == r.OrderStatus.FILLED
    if alive_or_filled and last.filled_quantity + last.remaining_quantity != last.quantity:
        return f"filled {last.filled_quantity} + remaining {last.remaining_quantity} != {last.quantity}"
    return None


@pytest.mark.parametrize(
    ("seed", "kills"),
    [
        pytest.param(11, {}, id="no-kills"),
        *[pytest.param(seed, kill_plan(seed), id=f"kill-every-service-seed-{seed}") for seed in (11, 23, 37)],
    ],
)
async def test_random_workload_keeps_every_invariant(
    infra: Infra, tmp_path: Path, seed: int, kills: dict[int, str]
) -> None:
    stack = Stack(infra.kafka_bootstrap, tmp_path)
    btc = instrument("BTC-USD")
    rng = random.Random(seed)
    try:
        await stack.start([btc])
        for acct in ACCOUNTS:
            for asset, amount in DEPOSITS.items():
                await stack.deposit(acct, asset, str(amount))
        await stack.until("deposits", lambda: len(stack.balances()) == 6)
        placed: list[r.SubmitOrder] = []
        for i in range(ORDERS):
            if i in kills:
                stack.kill(kills[i])
                await asyncio.sleep(0.5)
                await stack.start_service(kills[i])
            if placed and rng.random() < 0.2:
                await stack.cancel(rng.choice(placed))
                continue
            side = rng.choice(["BUY", "SELL"])
            price = str(D(100) + D(rng.randint(-4, 4)) / 2)
            qty = str(D(rng.randint(1, 20)) / 10)
            tif = "IOC" if rng.random() < 0.1 else "GTC"
            placed.append(
                await stack.place(
                    stack.order(rng.choice(ACCOUNTS), "BTC-USD", side, qty, price, time_in_force=tif)
                )
            )

        def conserved() -> bool:
            balances, fees = stack.balances(), stack.fees()
            return all(
                sum(
                    balances.get((a, asset), (D(0), D(0)))[0] + balances.get((a, asset), (D(0), D(0)))[1]
                    for a in ACCOUNTS
                )
                + fees.get(asset, D(0))
                == len(ACCOUNTS) * amount
                for asset, amount in DEPOSITS.items()
            )

        def settled() -> bool:
            return (
                all(stack.last_report(o.order_id) is not None for o in placed)
                and conserved()
                and holds_match()
            )

        def holds_match() -> bool:
            need = stack.holds_needed(placed)
            held = {k: v[1] for k, v in stack.balances().items()}
            return all(held.get((a, asset), D(0)) == need[(a, asset)] for a in ACCOUNTS for asset in DEPOSITS)

        try:
            await stack.until(
                "a settled, conserved ledger whose holds match the open orders", settled, timeout=120
            )
        except AssertionError as exc:
            missing = [o.order_id for o in placed if stack.last_report(o.order_id) is None]
            raise AssertionError(
                f"unreported {missing[:5]} ({len(missing)}), conserved={conserved()}, "
                f"holds={holds_match()}, balances={stack.balances()}, fees={stack.fees()}"
            ) from exc
        assert stack.double_settlements() == []
        assert stack.dead_letters() == {}
        wrong = {o.order_id: report_gaps(stack.reports(o.order_id)) for o in placed}
        assert {k: v for k, v in wrong.items() if v} == {}
        fills = [
            x for x in stack.seen["execution.reports"] if isinstance(x, r.ExecutionReport) and x.trade_id
        ]
        assert len({(x.order_id, x.trade_id) for x in fills}) > 20  # the workload really traded

        # every order is terminal or open in its book: open quantity per level equals the matcher's depth
        def book_matches() -> bool:
            depth = [x for x in stack.seen["md.depth"] if isinstance(x, r.DepthSnapshot)]
            if not depth:
                return False
            levels = {(lv.side.value, lv.price): lv.quantity for lv in depth[-1].levels}
            open_qty: dict[tuple[str, D], D] = defaultdict(D)
            for o in placed:
                rep = stack.last_report(o.order_id)
                assert rep is not None
                if rep.status not in TERMINAL:
                    assert rep.price is not None
                    open_qty[("BID" if o.side == r.Side.BUY else "ASK", rep.price)] += rep.remaining_quantity
            return levels == {k: v for k, v in open_qty.items() if v}

        try:
            await stack.until("open orders equal to the book", book_matches, timeout=30)
        except AssertionError as exc:
            depth = [x for x in stack.seen["md.depth"] if isinstance(x, r.DepthSnapshot)]
            still_open = [stack.last_report(o.order_id) for o in placed]
            still_open = [x for x in still_open if x is not None and x.status not in TERMINAL]
            raise AssertionError(f"book {depth[-1] if depth else None}, open {still_open[:6]}") from exc
        assert dict(stack.runs) == {s: 2 if kills else 1 for s in SERVICES}
    finally:
        await stack.stop()

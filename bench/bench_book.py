"""Benchmark: the matching core alone on a replayed mixed workload, beside pyorderbook.

Workload (deterministic, seed 7): about 1,000 resting orders over about 750
price levels, then N operations: 65% add (limit, resting), 20% cancel of a live
order, 15% IOC/market taking a few levels. The operation list is generated
once (with our book as the oracle of which orders are live) and replayed on
both engines in the same process; both get pre-built order objects, so the
peer's UUID and Decimal construction is not timed. pyorderbook has no IOC or
market orders: they are a match at the same (or an extreme) price followed by
a cancel of any rest, which is what IOC means. Its logging is disabled.

Run: make bench   (or python bench/bench_book.py --ops 200000)
"""

from __future__ import annotations

import argparse
import gc
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from orderstream.matcher.domain.book import Book
from orderstream.matcher.domain.model import Kind, NewOrder, Tif

MID = 10_000
HALF_LEVELS = 825


@dataclass(frozen=True)
class Op:
    kind: str  # add, cancel, ioc, market
    order_id: str
    is_buy: bool
    qty: int
    price: int | None


def workload(n_ops: int, seed: int = 7) -> tuple[list[Op], list[Op]]:
    """(prefill, ops); our book decides which orders are live when a cancel is drawn."""
    rng = random.Random(seed)
    book = Book("BENCH")
    live: list[str] = []
    ids = iter(range(10**9))

    def add_op() -> Op:
        is_buy = rng.random() < 0.5
        offset = rng.randint(1, HALF_LEVELS)
        price = MID - offset if is_buy else MID + offset
        return Op("add", f"o{next(ids)}", is_buy, rng.randint(1, 10), price)

    def apply(op: Op) -> None:
        if op.kind == "cancel":
            book.cancel(op.order_id, op.order_id)
        else:
            book.submit(to_ours(op))
        if op.kind == "add" and op.order_id in book.orders:
            live.append(op.order_id)

    prefill = [add_op() for _ in range(1_000)]
    for op in prefill:
        apply(op)
    ops = []
    for _ in range(n_ops):
        r = rng.random()
        live[:] = [i for i in live if i in book.orders] if len(live) > 2_000 else live
        if r < 0.65 or not live:
            op = add_op()
        elif r < 0.85:
            victim = live.pop(rng.randrange(len(live)))
            while victim not in book.orders and live:
                victim = live.pop(rng.randrange(len(live)))
            op = Op("cancel", victim, True, 0, None) if victim in book.orders else add_op()
        else:
            is_buy = rng.random() < 0.5
            best = book.best_ask() if is_buy else book.best_bid()
            if best is None:
                op = add_op()
            elif rng.random() < 0.5:
                through = rng.randint(0, 3)
                op = Op("ioc", f"o{next(ids)}", is_buy, rng.randint(5, 25),
                        best + through if is_buy else best - through)
            else:
                op = Op("market", f"o{next(ids)}", is_buy, rng.randint(5, 25), None)
        apply(op)
        ops.append(op)
    return prefill, ops


def to_ours(op: Op) -> NewOrder:
    """Our command for `op`; one account per order, so self-trade prevention never fires."""
    if op.kind == "add":
        return NewOrder(op.order_id, op.order_id, op.order_id, op.is_buy, op.qty, price=op.price)
    if op.kind == "ioc":
        return NewOrder(op.order_id, op.order_id, op.order_id, op.is_buy, op.qty, price=op.price,
                        tif=Tif.IOC)
    return NewOrder(op.order_id, op.order_id, op.order_id, op.is_buy, op.qty, kind=Kind.MARKET,
                    tif=Tif.IOC)


class Engine:
    name = ""

    def prepare(self, prefill: list[Op], ops: list[Op]) -> list[Callable[[], Any]]:
        raise NotImplementedError


class Ours(Engine):
    name = "orderstream Book"

    def prepare(self, prefill: list[Op], ops: list[Op]) -> list[Callable[[], Any]]:
        book = Book("BENCH")
        for op in prefill:
            book.submit(to_ours(op))
        calls: list[Callable[[], Any]] = []
        for op in ops:
            if op.kind == "cancel":
                calls.append(partial(book.cancel, op.order_id, op.order_id))
            else:
                calls.append(partial(book.submit, to_ours(op)))
        return calls


class PyOrderBook(Engine):
    name = "pyorderbook 0.4.9"

    def prepare(self, prefill: list[Op], ops: list[Op]) -> list[Callable[[], Any]]:
        from pyorderbook import Book as PBook
        from pyorderbook import ask, bid

        logging.disable(logging.CRITICAL)
        book = PBook()
        orders: dict[str, Any] = {}

        def make(op: Op) -> Any:
            if op.kind == "market":
                price = 10**9 if op.is_buy else 0.0001
            else:
                assert op.price is not None
                price = op.price
            o = (bid if op.is_buy else ask)("BENCH", Decimal(price), op.qty)
            orders[op.order_id] = o
            return o

        for op in prefill:
            book.match(make(op))

        def cancel(oid: str) -> None:
            book.cancel(orders[oid])

        def ioc(o: Any) -> None:
            book.match(o)
            if o.quantity and book.get_order(o.id) is not None:
                book.cancel(o)

        calls: list[Callable[[], Any]] = []
        for op in ops:
            if op.kind == "cancel":
                calls.append(partial(cancel, op.order_id))
            elif op.kind == "add":
                calls.append(partial(book.match, make(op)))
            else:
                calls.append(partial(ioc, make(op)))
        return calls


def measure(engine: Engine, prefill: list[Op], ops: list[Op], rounds: int) -> dict[str, Any]:
    best = float("inf")
    per_kind: dict[str, list[int]] = {}
    for r in range(rounds):
        calls = engine.prepare(prefill, ops)
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        for call in calls:
            call()
        elapsed = time.perf_counter() - t0
        gc.enable()
        best = min(best, elapsed)
        if r == 0:  # one latency pass, timed per operation
            calls = engine.prepare(prefill, ops)
            samples: dict[str, list[int]] = {"add": [], "cancel": [], "ioc": [], "market": []}
            clock = time.perf_counter_ns
            for op, call in zip(ops, calls, strict=True):
                t = clock()
                call()
                samples[op.kind].append(clock() - t)
            per_kind = samples
    out: dict[str, Any] = {"ops_s": len(ops) / best}
    allsamples = sorted(x for v in per_kind.values() for x in v)
    out["all"] = (pct(allsamples, 50), pct(allsamples, 99))
    for k, v in per_kind.items():
        v.sort()
        out[k] = (pct(v, 50), pct(v, 99))
    return out


def pct(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(len(sorted_ns) * p / 100))] / 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    prefill, ops = workload(args.ops)
    mix = {k: sum(1 for o in ops if o.kind == k) / len(ops) for k in ("add", "cancel", "ioc", "market")}
    probe = Book("BENCH")
    for op in prefill:
        probe.submit(to_ours(op))
    bids, asks = probe.depth()
    print(f"workload: {len(ops):,} ops after a prefill of {len(probe.orders):,} resting orders on "
          f"{len(bids) + len(asks)} levels; mix " + ", ".join(f"{k} {v:.0%}" for k, v in mix.items()))
    results = {e.name: measure(e, prefill, ops, args.rounds) for e in (Ours(), PyOrderBook())}
    print(f"\n{'engine':22} {'ops/s':>10} {'p50 us':>8} {'p99 us':>8}   per op p50/p99 us: "
          "add | cancel | ioc | market")
    for name, r in results.items():
        kinds = " | ".join(f"{r[k][0]:.1f}/{r[k][1]:.1f}" for k in ("add", "cancel", "ioc", "market"))
        print(f"{name:22} {r['ops_s']:>10,.0f} {r['all'][0]:>8.1f} {r['all'][1]:>8.1f}   {kinds}")
    ours, peer = results["orderstream Book"], results["pyorderbook 0.4.9"]
    met = ours["ops_s"] >= max(200_000, peer["ops_s"])
    print(f"\nratio: {ours['ops_s'] / peer['ops_s']:.2f}x the peer's throughput; "
          f"goal >= 1.0x and >= 200,000 ops/s: {'MET' if met else 'NOT MET'}")


if __name__ == "__main__":
    main()

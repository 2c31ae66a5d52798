"""Benchmark: the FIX leg, order out to the venue's fill report back, against QuickFIX/J's Executor.

The router's FIX venue adapter (router/fixvenue.py, over common/fix/) dials a private Executor
(tests/fix_executor.py) on localhost. Orders (marketable buy limits, which the Executor fills
in full at its market price) go out at `--rate` per second; for each, the time from handing the
order to the adapter until its FILLED event comes out of the adapter (New and Fill reports
received, dictionary-checked, journaled) is measured, p50/p99/max. The same run measures the
session layer alone: encoding + dictionary check of a NewOrderSingle, and parsing + check of
an ExecutionReport, per message (µs), so the Executor's own time shows as the remainder.

Run: make bench   (or python bench/bench_fix.py --orders 2000 --rate 200)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import timeit
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fix_executor import Executor  # noqa: E402
from tests.kafka_tools import free_port  # noqa: E402

from orderstream.common.fix.dictionary import Dictionary  # noqa: E402
from orderstream.common.fix.session import BEGIN_STRING, encode, parse  # noqa: E402
from orderstream.router.fixvenue import FixVenue, FixVenueConfig  # noqa: E402
from orderstream.router.venue import VenueOrder  # noqa: E402

REPORT = (b"8=FIX.4.4\x019=178\x0135=8\x0134=3\x0149=EXEC\x0152=20261201-22:36:47.702\x0156=ORDERSTREAM\x01"
          b"6=0.5\x0111=o-1\x0114=10\x0117=2\x0131=0.5\x0132=10\x0137=2\x0138=10\x0139=2\x0154=1\x01"
          b"55=ADA-USD\x01150=2\x01151=0\x0110=000\x01")


def codec_costs() -> tuple[float, float]:
    """µs per NewOrderSingle encoded and checked; per ExecutionReport parsed and checked."""
    dictionary = Dictionary.fix44()
    body = [(11, "o-1"), (21, "1"), (55, "ADA-USD"), (54, "1"), (60, "20261201-22:36:47.702"),
            (38, Decimal(10)), (40, "2"), (44, Decimal("0.6")), (59, "1")]
    header = [(49, "ORDERSTREAM"), (56, "EXEC"), (34, 2), (52, "20261201-22:36:47.702")]

    def out() -> None:
        dictionary.check(parse(encode(BEGIN_STRING, "D", header, body)).pairs)

    def back() -> None:
        dictionary.check(parse(REPORT).pairs)

    n = 5000
    return (min(timeit.repeat(out, number=n, repeat=3)) / n * 1e6,
            min(timeit.repeat(back, number=n, repeat=3)) / n * 1e6)


async def leg(orders: int, rate: float, folder: Path) -> list[float]:
    venue = Executor(folder / "executor", free_port())
    venue.start()
    try:
        adapter = FixVenue("FIX-EXEC", FixVenueConfig(port=venue.port), folder / "router")
        adapter.resume()
        await asyncio.wait_for(adapter.session.logged_on_event.wait(), 30)
        sent: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()

        async def collect() -> None:
            async for ev in adapter.events():
                if ev.kind == "FILLED" and ev.leaves == 0:
                    latencies.append((time.perf_counter() - sent[ev.order_id]) * 1000)
                    if len(latencies) == orders:
                        done.set()
                        return

        collector = asyncio.get_running_loop().create_task(collect())
        start = time.perf_counter()
        for i in range(orders):
            order_id = f"b-{i}"
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            sent[order_id] = time.perf_counter()
            asyncio.get_running_loop().create_task(adapter.place(
                VenueOrder(order_id, "A", f"c-{i}", "ADA-USD", "BUY", Decimal(10), Decimal("0.6"))))
        await asyncio.wait_for(done.wait(), 120)
        collector.cancel()
        await adapter.initiator.stop()
        return latencies
    finally:
        venue.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="orders per second offered")
    args = parser.parse_args()
    encode_us, decode_us = codec_costs()
    print(f"session layer: NewOrderSingle encode + dictionary check {encode_us:.1f} µs; "
          f"ExecutionReport parse + dictionary check {decode_us:.1f} µs")
    for rate in (args.rate / 10, args.rate):
        with tempfile.TemporaryDirectory() as tmp:
            count = args.orders if rate == args.rate else args.orders // 5
            ms = sorted(asyncio.run(leg(count, rate, Path(tmp))))
        p99 = ms[int(len(ms) * 0.99) - 1]
        print(f"FIX leg at {rate:.0f} orders/s ({len(ms)} orders): order -> venue fill report "
              f"p50 {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms")


if __name__ == "__main__":
    main()

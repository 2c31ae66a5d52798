"""What the shared replay cache and rate limits add to one gateway request, against MongoDB.

Light load: one request at a time, as the p50 goal is stated. Prints p50/p90/p99 in ms of a
signature's first use (one insert), an order token when this process wrote the bucket last (one
compare-and-set update), the two in sequence (a signed REST order), and a token when another
gateway moved the bucket since (read and update).

    MONGO_URL=mongodb://127.0.0.1:27117/ python bench/bench_guards.py
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient

from orderstream.gateway.auth import Replays
from orderstream.gateway.ratelimit import SharedBuckets

ROUNDS = 500


async def timed(step: Callable[[], Awaitable[Any]]) -> list[float]:
    out = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        await step()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def show(name: str, ms: list[float]) -> None:
    q = statistics.quantiles(ms, n=100)
    print(f"{name:<48} p50 {q[49]:6.3f}  p90 {q[89]:6.3f}  p99 {q[98]:6.3f} ms")


async def main() -> None:
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(os.environ.get("MONGO_URL", "mongodb://127.0.0.1:27017/"))
    db = client[f"bench_guards_{uuid.uuid4().hex[:8]}"]
    try:
        replays = Replays(db["gateway_signatures"])
        mine = SharedBuckets(db["gateway_rate_limits"], 1e9, 10**9)
        other = SharedBuckets(db["gateway_rate_limits"], 1e9, 10**9)
        await mine.take("warm")

        def signature() -> Awaitable[bool]:
            return replays.first_use(secrets.token_hex(32), int(time.time() * 1000) + 5000)

        async def both() -> None:
            await signature()
            await mine.take("k1")

        async def contended() -> None:
            await other.take("k2")
            t0 = time.perf_counter()
            await mine.take("k2")
            lost.append((time.perf_counter() - t0) * 1000)

        lost: list[float] = []
        show("signature first use (insert)", await timed(signature))
        show("order token, bucket last moved here (update)", await timed(lambda: mine.take("k1")))
        show("signed REST order: signature + token", await timed(both))
        await timed(contended)
        show("order token, bucket moved by another gateway", lost)
    finally:
        await client.drop_database(db.name)


if __name__ == "__main__":
    asyncio.run(main())

"""What the shared replay cache and rate limits add to one gateway request, against MongoDB.

Light load: one request at a time, as the p50 goal is stated. Prints p50/p90/p99 in ms of a
signature's first use (one insert), an order token claimed from MongoDB (one insert; `ORDERS_LEASE`
0), an order token with tokens taken ahead (the default: a spare token most of the time), and a
signed REST order (signature, then a token taken ahead).

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
        exact = SharedBuckets(db["gateway_rate_limits"], 1e9, 10**9, 0)
        ahead = SharedBuckets(db["gateway_rate_limits"], 1e9, 10**9, 16)
        await exact.take("warm")

        def signature() -> Awaitable[bool]:
            return replays.first_use(secrets.token_hex(32), int(time.time() * 1000) + 5000)

        async def both() -> None:
            await signature()
            await ahead.take("k2")

        show("signature first use (insert)", await timed(signature))
        show("order token claimed from MongoDB (insert)", await timed(lambda: exact.take("k1")))
        show("order token, tokens taken ahead (16)", await timed(lambda: ahead.take("k2")))
        show("signed REST order: signature + token taken ahead", await timed(both))
    finally:
        await client.drop_database(db.name)


if __name__ == "__main__":
    asyncio.run(main())

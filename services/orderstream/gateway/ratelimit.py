"""Order rate limits per API key, one token bucket per key shared by every gateway process (MongoDB).

Tokens are numbered: token `j` of a key is the `j`-th interval of `1 / rate_per_s` since the epoch,
and at time `now` the tokens that may be taken are those after the current interval and at most
`burst` ahead of it, `floor(now / interval) < j <= floor(now / interval) + burst`. Taking token `j`
inserts the document `{_id: "<key>|<j>"}` into `gateway_rate_limits`: the unique `_id` makes the
claim atomic on MongoDB and on FerretDB alike (FerretDB 1.x runs an update's filter and its write
apart: two gateways' compare-and-set on one document both succeed, measured here in 146 of 200
tries, and so does `$inc`), so two gateways never take one token. Over any span `T` a key gets
at most `burst + T * rate_per_s` tokens: a token bucket. A process remembers the lowest token not
known to be taken, so at light load a take is one insert. Takes of one key that come while one is
in flight go together as one `insert_many` (`Coalescer`). Claims of past intervals are deleted by
`forget_expired`.

So that an order does not wait for MongoDB, a process takes tokens ahead: each take asks for
`lease` tokens more than it needs and keeps them as spare for the key; an order with a spare token
goes on at once, and when half the spare is gone a task takes more in the background. A spare token
is taken from the shared bucket when it is claimed, so no gateway lets more through than the bucket
allows; what a process holds and does not use (at most `lease` per key, until its interval passes)
is lost to the others. The lease is at most a tenth of the burst (0 for small bursts: every take is
exact).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from orderstream.common.mongo import insert_new
from orderstream.gateway.batching import Coalescer

log = logging.getLogger(__name__)

ATTEMPTS = 8  # rounds of claims lost to other gateways before a take is refused for now
BUSY_RETRY_S = 0.1


def _claim_id(key: str, token: int) -> str:
    return f"{key}|{token:020d}"  # fixed width: `_id` order is token order


class SharedBuckets:
    def __init__(self, collection: Any, rate_per_s: float, burst: int, lease: int = 0) -> None:
        self.collection = collection
        self.interval = max(1, round(1e9 / rate_per_s))  # ns per token
        self.burst = burst
        self.lease = min(lease, burst // 10)
        self._next: dict[str, int] = {}  # key -> the lowest token not known to be taken
        self._takes: dict[str, Coalescer[None, float]] = {}
        self._spare: dict[str, int] = {}
        self._refills: dict[str, asyncio.Task[None]] = {}

    async def take(self, key: str) -> float:
        """Take a token: 0 when allowed, else the seconds until one is available."""
        spare = self._spare.get(key, 0)
        if spare:
            self._spare[key] = spare - 1
            if spare - 1 <= self.lease // 2 and key not in self._refills:
                self._refills[key] = asyncio.get_running_loop().create_task(self._refill(key))
            return 0.0
        takes = self._takes.get(key)
        if takes is None:
            takes = self._takes[key] = Coalescer(lambda items: self._take_ahead(key, len(items)))
        return await takes.submit(None)

    async def _take_ahead(self, key: str, n: int) -> list[float]:
        """`n` tokens for the requests waiting, and up to `lease` more kept as spare."""
        granted, retry = await self._claim(key, n + self.lease)
        refill = self._refills.get(key)
        if refill is not None:  # what it claims while these wait serves them first, not a later take
            await asyncio.shield(refill)
        have = granted + self._spare.pop(key, 0)
        self._spare[key] = max(0, have - n)
        return [0.0] * min(n, have) + [retry] * max(0, n - have)

    async def _refill(self, key: str) -> None:
        try:
            granted, _ = await self._claim(key, self.lease)
            self._spare[key] = self._spare.get(key, 0) + granted
        except Exception:  # the next take without spare claims itself, and answers its error
            log.warning("taking rate-limit tokens ahead failed", extra={"key": key}, exc_info=True)
        finally:
            del self._refills[key]

    async def _claim(self, key: str, n: int) -> tuple[int, float]:
        """Claim up to `n` tokens of `key`: (how many, seconds until the next one frees up)."""
        granted = 0
        for _ in range(ATTEMPTS):
            now = time.time_ns()
            current = now // self.interval
            first = max(self._next.get(key, 0), current + 1)
            last = min(first + n - granted, current + self.burst + 1)  # exclusive
            retry = ((current + 1) * self.interval - now) / 1e9
            if first >= last:
                return granted, retry
            tokens = range(first, last)
            taken = await insert_new(self.collection, [{"_id": _claim_id(key, t)} for t in tokens])  # others'
            granted += len(tokens) - len(taken)
            self._next[key] = last
            if granted >= n:
                return granted, retry
        return granted, BUSY_RETRY_S

    async def forget_expired(self) -> None:
        """Delete the claims of intervals gone by, for the keys this process took tokens for."""
        current = time.time_ns() // self.interval
        for key in list(self._next):
            await self.collection.delete_many(
                {"_id": {"$gte": _claim_id(key, 0), "$lte": _claim_id(key, current)}}
            )

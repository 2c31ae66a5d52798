"""Order rate limits per API key, one token bucket per key shared by every gateway process (MongoDB).

The bucket is kept as GCRA's theoretical arrival time `tat` (nanoseconds): a key may take `n` tokens
when `max(tat, now) + n * interval <= now + burst * interval`, and taking them moves `tat` there.
One document per key, `gateway_rate_limits` `{_id: key id, tat}`, changed by compare-and-set
(`update_one` matching the `tat` this process last saw), which MongoDB and FerretDB both do
atomically, so two gateways never spend one token twice. A process remembers the `tat` it last
wrote, so at light load a take is one round trip; when another gateway moved it, the update
matches nothing and the process reads the document and tries again. `tat` only grows, so a
refusal decided on a remembered `tat` is right without a round trip. Takes of one key that come
while one is in flight go together as one update (`Coalescer`).
"""

from __future__ import annotations

import time
from typing import Any

from pymongo.errors import DuplicateKeyError

from orderstream.gateway.batching import Coalescer

ATTEMPTS = 8  # compare-and-set rounds lost to other gateways before a take is refused for now
BUSY_RETRY_S = 0.1


class SharedBuckets:
    def __init__(self, collection: Any, rate_per_s: float, burst: int) -> None:
        self.collection = collection
        self.interval = max(1, round(1e9 / rate_per_s))  # ns per token
        self.burst = burst
        self._tat: dict[str, int] = {}
        self._takes: dict[str, Coalescer[None, float]] = {}

    async def take(self, key: str) -> float:
        """Take a token: 0 when allowed, else the seconds until one is available."""
        takes = self._takes.get(key)
        if takes is None:
            takes = self._takes[key] = Coalescer(lambda items: self._take(key, len(items)))
        return await takes.submit(None)

    async def _take(self, key: str, n: int) -> list[float]:
        """Up to `n` tokens for `key`, first come first served: 0 for each granted, else a retry in s."""
        for _ in range(ATTEMPTS):
            known = self._tat.get(key)
            if known is None:
                doc = await self.collection.find_one({"_id": key})
                known = doc["tat"] if doc is not None else None
                if known is not None:
                    self._tat[key] = known
            now = time.time_ns()
            start = max(known or 0, now)
            granted = max(0, min(n, (now + self.burst * self.interval - start) // self.interval))
            tat = start + granted * self.interval
            retry = (tat + self.interval - self.burst * self.interval - now) / 1e9
            if granted:
                if known is None:
                    try:
                        await self.collection.insert_one({"_id": key, "tat": tat})
                    except DuplicateKeyError:  # another gateway made it first
                        continue
                else:
                    done = await self.collection.update_one(
                        {"_id": key, "tat": known}, {"$set": {"tat": tat}}
                    )
                    if not done.matched_count:  # another gateway took tokens since: read again
                        self._tat.pop(key, None)
                        continue
                self._tat[key] = tat
            return [0.0] * granted + [retry] * (n - granted)
        return [BUSY_RETRY_S] * n

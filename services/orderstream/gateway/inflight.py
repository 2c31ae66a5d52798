"""Backpressure: the orders this gateway sent that the order path has not reported yet.

An order counts from the moment it is on the broker until its first execution report (sequence 1:
accepted, or rejected by any service) comes back on `execution.reports`, which the gateway reads
anyway for the user streams. While `bound` or more are out, a new order is refused at once
with 50302 "busy" (REST 503 with Retry-After) instead of queueing for seconds behind them. An
order whose report never comes (the record lost to a dead-letter topic, say) stops counting
after `expire_s`, counted in `expired`.

The bound follows the chain's latency (`wait_target_s`; 0: the bound is `limit`, fixed). The
orders let in wait about the bound divided by the chain's rate (Little's law), and that rate
is what an overloaded chain decides, so a fixed bound gives a fixed wait only at one rate
(256 at 200 orders/s: over a second). Every `interval_s` the median first-report latency of
the orders sent since the bound was last lowered is compared with the target: above it, the
bound shrinks in proportion (bound x target / latency, not below `floor`); when they waited
less, or none is out, it grows by a tenth (up to `limit`), so a quiet gateway soon takes
bursts of `limit` again; while orders are out and none sent since the cut has answered, it
holds. Only orders sent after a cut judge the next one: the slow reports of orders let in
before it do not cut twice for the same queue.

Each gateway bounds its own orders; reports are matched by order id, so another gateway's
reports do not count here. A record is decoded for this only when its account has orders out.
The time from the order's queueing for the broker to that first report is observed in
`orderstream_gateway_order_report_seconds` (/metrics; the operator dashboard plots it).
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable

from prometheus_client import Histogram

ORDER_REPORT = Histogram(
    "orderstream_gateway_order_report_seconds",
    "From an order queued for the broker to its first execution report (accepted or rejected)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class InFlight:
    def __init__(
        self, limit: int, expire_s: float, *, wait_target_s: float = 0.0, floor: int = 32,
        interval_s: float = 0.1, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.expire_s = expire_s
        self.wait_target_s = wait_target_s
        self.floor = min(floor, limit)
        self.interval_s = interval_s
        self._clock = clock
        self.bound = limit  # orders out at which a new one is refused
        self._cut_at = 0.0  # when the bound was last lowered
        self._judged_at = clock()
        self._waits: list[float] = []  # first-report latencies of orders sent since _cut_at
        self.by_account: dict[str, dict[str, float]] = {}  # account -> order id -> when sent
        self._sent: deque[tuple[float, str, str]] = deque()  # (when, account, order id), oldest first
        self.count = 0
        self.expired = 0
        self.refused = 0

    def sent(self, account: str, order_ids: list[str]) -> None:
        now = self._clock()
        out = self.by_account.setdefault(account, {})
        for order_id in order_ids:
            if order_id not in out:
                out[order_id] = now
                self._sent.append((now, account, order_id))
                self.count += 1

    def reported(self, account: str, order_id: str, *, report: bool = True) -> None:
        """The order's first report came (`report`), or it was not sent after all."""
        out = self.by_account.get(account)
        if out is not None and order_id in out:
            if report:
                sent_at = out[order_id]
                wait = self._clock() - sent_at
                ORDER_REPORT.observe(wait)
                if sent_at >= self._cut_at:
                    self._waits.append(wait)
            self._forget(account, order_id, out)

    def busy(self) -> bool:
        """Whether a new order must wait; counts the refusal."""
        now = self._clock()
        if self.wait_target_s and now - self._judged_at >= self.interval_s:
            self._judge(now)
        deadline = now - self.expire_s
        while self._sent and self._sent[0][0] < deadline:
            _, account, order_id = self._sent.popleft()
            out = self.by_account.get(account)
            if out is not None and order_id in out:
                self._forget(account, order_id, out)
                self.expired += 1
        if self.count < self.bound:
            return False
        self.refused += 1
        return True

    def _judge(self, now: float) -> None:
        """Move the bound after the latency of the orders reported since the last judgement."""
        self._judged_at = now
        waits, self._waits = self._waits, []
        if waits:
            wait = statistics.median(waits)
            if wait > self.wait_target_s:
                self.bound = max(self.floor, int(self.bound * self.wait_target_s / wait))
                self._cut_at = now
                return
        elif self.count:  # orders are out and none sent since the cut has answered yet: no evidence
            return
        self.bound = min(self.limit, self.bound + max(1, self.bound // 10))

    def _forget(self, account: str, order_id: str, out: dict[str, float]) -> None:
        out.pop(order_id, None)
        self.count -= 1
        if not out:
            del self.by_account[account]

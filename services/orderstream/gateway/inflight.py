"""Backpressure: the orders this gateway sent that the order path has not reported yet.

An order counts from the moment it is on the broker until its first execution report (sequence 1:
accepted, or rejected by any service) comes back on `execution.reports`, which the gateway reads
anyway for the user streams. While more than `limit` are out, a new order is refused at once
with 50302 "busy" (REST 503 with Retry-After) instead of queueing for seconds behind them: the
orders let in keep a bounded latency, about `limit` divided by the chain's rate. An order whose
report never comes (the record lost to a dead-letter topic, say) stops counting after
`expire_s`, counted in `expired`.

Each gateway bounds its own orders; reports are matched by order id, so another gateway's
reports do not count here. A record is decoded for this only when its account has orders out.
The time from the order's queueing for the broker to that first report is observed in
`orderstream_gateway_order_report_seconds` (/metrics; the operator dashboard plots it).
"""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import Histogram

ORDER_REPORT = Histogram(
    "orderstream_gateway_order_report_seconds",
    "From an order queued for the broker to its first execution report (accepted or rejected)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class InFlight:
    def __init__(self, limit: int, expire_s: float) -> None:
        self.limit = limit
        self.expire_s = expire_s
        self.by_account: dict[str, dict[str, float]] = {}  # account -> order id -> when sent
        self._sent: deque[tuple[float, str, str]] = deque()  # (when, account, order id), oldest first
        self.count = 0
        self.expired = 0
        self.refused = 0

    def sent(self, account: str, order_ids: list[str]) -> None:
        now = time.monotonic()
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
                ORDER_REPORT.observe(time.monotonic() - out[order_id])
            self._forget(account, order_id, out)

    def busy(self) -> bool:
        """Whether a new order must wait; counts the refusal."""
        deadline = time.monotonic() - self.expire_s
        while self._sent and self._sent[0][0] < deadline:
            _, account, order_id = self._sent.popleft()
            out = self.by_account.get(account)
            if out is not None and order_id in out:
                self._forget(account, order_id, out)
                self.expired += 1
        if self.count < self.limit:
            return False
        self.refused += 1
        return True

    def _forget(self, account: str, order_id: str, out: dict[str, float]) -> None:
        out.pop(order_id, None)
        self.count -= 1
        if not out:
            del self.by_account[account]

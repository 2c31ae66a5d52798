"""External venues behind one adapter interface, and what every real venue needs around it.

An adapter places, cancels, reports an order's status, and streams the venue's
events. `Resilient` wraps one with retry and exponential backoff on transient
errors and maps venue error codes to our reason codes. The router turns venue
events into order events (app.py), and after a reconnect asks `status` for
every order in flight so nothing the venue did while the stream was down is
missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VenueOrder:
    order_id: str
    account_id: str
    client_order_id: str
    symbol: str
    side: str  # BUY / SELL
    quantity: Decimal
    price: Decimal | None  # None: market
    time_in_force: str = "GTC"


@dataclass(frozen=True)
class VenueEvent:
    """Something the venue did to an order, numbered per order by the venue."""

    order_id: str
    venue_seq: int
    kind: str  # ACCEPTED, FILLED, REPLACED, CANCELED, REJECTED
    ts: int
    fill_id: str | None = None
    quantity: Decimal | None = None
    price: Decimal | None = None
    leaves: Decimal | None = None
    code: str | None = None  # venue error code of a rejection
    message: str = ""


class VenueError(Exception):
    """A venue call failed. Transient errors are retried; the others carry a venue code."""

    def __init__(self, code: str, message: str, transient: bool, ambiguous: bool = False,
                 unsent: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.transient = code, message, transient
        self.ambiguous = ambiguous  # the call may have been carried out all the same
        self.unsent = unsent  # certainly not carried out: it never left (e.g. the session is down)


class VenueAdapter(Protocol):
    name: str
    supports_replace: bool

    async def place(self, order: VenueOrder) -> None: ...

    async def cancel(self, order_id: str) -> None: ...

    async def replace(self, order_id: str, quantity: Decimal | None, price: Decimal | None) -> None:
        """Change an open order; its outcome comes back as a REPLACED event (or a VenueError)."""
        ...

    async def status(self, order_id: str) -> list[VenueEvent]:
        """Every event of the order so far; raises VenueError UNKNOWN_ORDER if the venue has none."""
        ...

    def events(self) -> AsyncIterator[VenueEvent]: ...

    def reconnects(self) -> int:
        """How many times the event stream came back after a disconnect."""
        ...

    def resume(self) -> None:
        """Start whatever runs in the background (called once the event loop runs)."""
        ...


REASONS = {  # venue error code -> our reason code
    "INSUFFICIENT_LIQUIDITY": "VENUE_NO_LIQUIDITY",
    "PRICE_OUT_OF_BAND": "INVALID_PRICE",
    "INVALID_QUANTITY": "INVALID_QUANTITY",
    "UNKNOWN_ORDER": "UNKNOWN_ORDER",
    "TOO_LATE_TO_CANCEL": "TOO_LATE_TO_CANCEL",
    "UNAVAILABLE": "VENUE_UNAVAILABLE",
    "UNKNOWN_SYMBOL": "UNKNOWN_SYMBOL",
    "CANCEL_UNSUPPORTED": "VENUE_CANCEL_UNSUPPORTED",
    "CANCEL_REJECTED": "VENUE_CANCEL_REJECTED",
    "CANCEL_PENDING": "CANCEL_PENDING",
    "NOT_DELIVERED": "VENUE_NOT_DELIVERED",
    "REPLACE_UNSUPPORTED": "VENUE_REPLACE_UNSUPPORTED",
    "REPLACE_REJECTED": "VENUE_REPLACE_REJECTED",
}


def reason_of(code: str | None) -> str:
    return REASONS.get(code or "", "VENUE_REJECTED")


class Resilient:
    """Retry transient failures (a call not answered within `timeout_s` is one) with exponential
    backoff; give up with UNAVAILABLE. After an UNAVAILABLE place or cancel the venue may well
    have acted: the caller must ask the venue (`status`) before it decides anything."""

    def __init__(self, adapter: VenueAdapter, attempts: int = 5, base_delay_s: float = 0.05,
                 timeout_s: float = 5.0) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.timeout_s = timeout_s
        self.retries = 0
        self.in_flight: dict[str, int] = {}  # calls under way, by kind

    async def call(self, what: str, fn, *args):  # type: ignore[no-untyped-def]
        self.in_flight[what] = self.in_flight.get(what, 0) + 1
        try:
            return await self._call(what, fn, *args)
        finally:
            self.in_flight[what] -= 1
            if not self.in_flight[what]:
                del self.in_flight[what]

    async def _call(self, what: str, fn, *args):  # type: ignore[no-untyped-def]
        delay = self.base_delay_s
        unsent = True  # every try so far certainly did not reach the venue
        for attempt in range(1, self.attempts + 1):
            try:
                try:
                    return await asyncio.wait_for(fn(*args), self.timeout_s)
                except TimeoutError:
                    raise VenueError("TIMEOUT", f"no answer within {self.timeout_s} s", True) from None
            except VenueError as exc:
                if not exc.transient and attempt > 1 and not unsent:  # maybe a refusal of what a try did
                    raise VenueError(exc.code, exc.message, False, ambiguous=True) from exc
                if not exc.transient:
                    raise
                unsent = unsent and exc.unsent
                if attempt == self.attempts:
                    raise VenueError("UNAVAILABLE", f"{what} failed {attempt} times: {exc.message}", False,
                                     ambiguous=not unsent) from exc
                self.retries += 1
                log.warning(
                    "venue call failed; retrying",
                    extra={"venue": self.name, "call": what, "attempt": attempt, "error": str(exc)},
                )
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def place(self, order: VenueOrder) -> None:
        await self.call("place", self.adapter.place, order)

    async def cancel(self, order_id: str) -> None:
        await self.call("cancel", self.adapter.cancel, order_id)

    async def replace(self, order_id: str, quantity: Decimal | None, price: Decimal | None) -> None:
        await self.call("replace", self.adapter.replace, order_id, quantity, price)

    async def status(self, order_id: str) -> list[VenueEvent]:
        result: list[VenueEvent] = await self.call("status", self.adapter.status, order_id)
        return result

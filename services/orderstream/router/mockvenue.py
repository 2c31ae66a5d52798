"""A configurable mock external venue: a product feature for demos, staging and adapter tests.

It behaves like a small remote exchange: calls take `latency_ms`, fail
transiently at `failure_rate`, orders are rejected at `reject_rate`, fill in
`partial_fills` parts at their limit price (market orders at `market_price`),
and the event stream drops at `disconnect_rate` per event for `disconnect_s`,
losing what it would have sent meanwhile, as a real socket would. Seeded, so a
run can be repeated.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel, Field

from orderstream.router.venue import VenueError, VenueEvent, VenueOrder


class MockVenueConfig(BaseModel):
    latency_ms: float = Field(5.0, ge=0, description="Delay of every call and between fills.")
    failure_rate: float = Field(0.0, ge=0, le=1, description="Share of calls failing transiently.")
    reject_rate: float = Field(0.0, ge=0, le=1, description="Share of orders the venue rejects.")
    partial_fills: int = Field(2, ge=1, description="Parts each order fills in.")
    disconnect_rate: float = Field(0.0, ge=0, le=1, description="Chance per event that the stream drops.")
    disconnect_s: float = Field(0.3, ge=0, description="How long a dropped stream stays down.")
    market_price: Decimal = Field(Decimal(100), gt=0, description="Fill price of market orders.")
    fill: bool = Field(True, description="False: orders rest until canceled.")
    seed: int = 7


@dataclass
class _Order:
    order: VenueOrder
    events: list[VenueEvent] = field(default_factory=list)
    filled: Decimal = Decimal(0)
    done: bool = False


class MockVenue:
    """The venue and its adapter in one: calls go straight to the simulated exchange."""

    def __init__(self, name: str, config: MockVenueConfig) -> None:
        self.name = name
        self.config = config
        self.rng = random.Random(config.seed)
        self.orders: dict[str, _Order] = {}
        self.queue: asyncio.Queue[VenueEvent] = asyncio.Queue()
        self.down_until = 0.0
        self._reconnects = 0
        self._was_down = False

    async def _call(self) -> None:
        await asyncio.sleep(self.config.latency_ms / 1000)
        if self.rng.random() < self.config.failure_rate:
            raise VenueError("BUSY", "venue busy, try again", transient=True)

    def _emit(self, o: _Order, kind: str, **fields: object) -> None:
        e = VenueEvent(o.order.order_id, len(o.events) + 1, kind, time.time_ns(), **fields)  # type: ignore[arg-type]
        o.events.append(e)
        if time.monotonic() < self.down_until:
            return  # lost with the stream; status() still has it
        if self.rng.random() < self.config.disconnect_rate:
            self.down_until = time.monotonic() + self.config.disconnect_s
            self._was_down = True
            return
        self.queue.put_nowait(e)

    async def place(self, order: VenueOrder) -> None:
        await self._call()
        if order.order_id in self.orders:
            return  # idempotent by our order id, like a venue's client order id
        o = self.orders[order.order_id] = _Order(order)
        if self.rng.random() < self.config.reject_rate:
            o.done = True
            self._emit(o, "REJECTED", code="INSUFFICIENT_LIQUIDITY", message="mock venue rejected the order")
            return
        self._emit(o, "ACCEPTED", leaves=order.quantity)
        if self.config.fill:
            asyncio.get_running_loop().create_task(self._fill(o))

    async def _fill(self, o: _Order) -> None:
        parts = self.config.partial_fills
        price = o.order.price if o.order.price is not None else self.config.market_price
        for i in range(parts):
            await asyncio.sleep(self.config.latency_ms / 1000)
            if o.done:
                return
            qty = o.order.quantity - o.filled if i == parts - 1 else (o.order.quantity / parts)
            o.filled += qty
            o.done = o.filled == o.order.quantity
            self._emit(
                o,
                "FILLED",
                fill_id=f"{self.name}-{o.order.order_id}-{i}",
                quantity=qty,
                price=price,
                leaves=o.order.quantity - o.filled,
            )

    async def cancel(self, order_id: str) -> None:
        await self._call()
        o = self.orders.get(order_id)
        if o is None:
            raise VenueError("UNKNOWN_ORDER", f"no order {order_id}", transient=False)
        if o.done:
            raise VenueError("TOO_LATE_TO_CANCEL", f"order {order_id} is done", transient=False)
        o.done = True
        self._emit(o, "CANCELED", quantity=o.order.quantity - o.filled, leaves=Decimal(0))

    async def status(self, order_id: str) -> list[VenueEvent]:
        await self._call()
        o = self.orders.get(order_id)
        if o is None:
            raise VenueError("UNKNOWN_ORDER", f"no order {order_id}", transient=False)
        return list(o.events)

    async def events(self) -> AsyncIterator[VenueEvent]:
        while True:
            yield await self.queue.get()

    def reconnects(self) -> int:
        if self._was_down and time.monotonic() >= self.down_until:
            self._was_down = False
            self._reconnects += 1
        return self._reconnects

"""A configurable mock external venue: a product feature for demos, staging and adapter tests.

It behaves like a small remote exchange: calls take `latency_ms`, fail
transiently at `failure_rate`, orders are rejected at `reject_rate`, fill in
`partial_fills` parts at their limit price (market orders at `market_price`),
and the event stream drops at `disconnect_rate` per event for `disconnect_s`,
losing what it would have sent meanwhile, as a real socket would. A place or a
cancel can also be carried out by the venue and still fail for the caller: its
answer lost (`lost_answers`) or late (`late_answers`, `late_ms`), which is what
makes a venue call ambiguous. With a `journal` file the venue keeps its orders
and their events across restarts of the process that hosts it, as a remote venue
outlives the router. Seeded, so a run can be repeated.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path

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
    lost_answers: float = Field(
        0.0, ge=0, le=1, description="Share of places and cancels carried out whose answer is lost."
    )
    late_answers: float = Field(
        0.0, ge=0, le=1, description="Share of places and cancels carried out and answered `late_ms` late."
    )
    late_ms: float = Field(1000.0, ge=0, description="How late a late answer comes.")
    journal: str | None = Field(None, description="File keeping the venue's orders across restarts.")
    seed: int = 7


@dataclass
class _Order:
    order: VenueOrder
    events: list[VenueEvent] = field(default_factory=list)
    filled: Decimal = Decimal(0)
    done: bool = False


class MockVenue:
    """The venue and its adapter in one: calls go straight to the simulated exchange."""

    supports_replace = False  # the router refuses a replace of its orders: cancel instead

    def __init__(self, name: str, config: MockVenueConfig) -> None:
        self.name = name
        self.config = config
        self.rng = random.Random(config.seed)
        self.orders: dict[str, _Order] = {}
        self.queue: asyncio.Queue[VenueEvent] = asyncio.Queue()
        self.down_until = 0.0
        self._reconnects = 0
        self._was_down = False
        self.journal = Path(config.journal) if config.journal else None
        if self.journal is not None and self.journal.exists():
            self._replay(self.journal)

    # -- the journal: one JSON line per order placed and per event --------------------------

    def _replay(self, path: Path) -> None:
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the last line, cut off by a kill
            if "place" in entry:
                order = VenueOrder(**{**entry["place"], "quantity": Decimal(entry["place"]["quantity"]),
                                      "price": _dec(entry["place"]["price"])})
                self.orders[order.order_id] = _Order(order)
            else:
                fields = entry["event"]
                for k in ("quantity", "price", "leaves"):
                    fields[k] = _dec(fields[k])
                e = VenueEvent(**fields)
                o = self.orders[e.order_id]
                o.events.append(e)
                if e.kind == "FILLED":
                    o.filled += e.quantity or Decimal(0)
                o.done = e.kind in ("REJECTED", "CANCELED") or o.filled == o.order.quantity

    def _write(self, entry: dict[str, object]) -> None:
        if self.journal is not None:
            with self.journal.open("a") as f:
                f.write(json.dumps(entry, default=str) + "\n")

    def resume(self) -> None:
        """Go on filling the open orders of the journal (once the event loop runs)."""
        if self.config.fill:
            for o in self.orders.values():
                if not o.done:
                    asyncio.get_running_loop().create_task(self._fill(o))

    # -- calls ------------------------------------------------------------------------

    async def _call(self) -> None:
        await asyncio.sleep(self.config.latency_ms / 1000)
        if self.rng.random() < self.config.failure_rate:
            raise VenueError("BUSY", "venue busy, try again", transient=True)

    async def _answer(self) -> None:
        """After the venue acted: the answer may still be lost or come late."""
        if self.rng.random() < self.config.lost_answers:
            raise VenueError("TIMEOUT", "no answer from the venue", transient=True)
        if self.rng.random() < self.config.late_answers:
            await asyncio.sleep(self.config.late_ms / 1000)

    def _emit(self, o: _Order, kind: str, **fields: object) -> None:
        e = VenueEvent(o.order.order_id, len(o.events) + 1, kind, time.time_ns(), **fields)  # type: ignore[arg-type]
        o.events.append(e)
        self._write({"event": asdict(e)})
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
            await self._answer()
            return  # idempotent by our order id, like a venue's client order id
        o = self.orders[order.order_id] = _Order(order)
        self._write({"place": asdict(order)})
        if self.rng.random() < self.config.reject_rate:
            o.done = True
            self._emit(o, "REJECTED", code="INSUFFICIENT_LIQUIDITY", message="mock venue rejected the order")
        else:
            self._emit(o, "ACCEPTED", leaves=order.quantity)
            if self.config.fill:
                asyncio.get_running_loop().create_task(self._fill(o))
        await self._answer()

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
        await self._answer()

    async def replace(self, order_id: str, quantity: Decimal | None, price: Decimal | None) -> None:
        raise VenueError("REPLACE_UNSUPPORTED", f"{self.name} cannot replace; cancel instead",
                         transient=False)

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


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))

"""The execution worker: order.events and md.trades in; reports, positions, ticker and candles out.

Wiring only: decode (the template), load the order's state, apply the event
through the transition table, store once per source record (common/state.py),
send. An illegal transition is logged and dead-lettered; the worker goes on.
"""

from __future__ import annotations

import logging
from collections import deque

from orderstream.common import records as r
from orderstream.common.app import Delivery, Service
from orderstream.common.mirror import Mirror
from orderstream.common.record import Record
from orderstream.common.state import Changes, Emit, StateStore
from orderstream.common.trading import TERMINAL, Position
from orderstream.execution.domain.order import IllegalTransition, OrderEvent, OrderState
from orderstream.execution.domain.ticker import SymbolStats
from orderstream.execution.settings import ExecutionSettings

log = logging.getLogger(__name__)

CLOSED = {s.value for s in TERMINAL}

REPORTS = "execution.reports"
POSITIONS = "execution.positions"


class ExecutionWorker:
    def __init__(self, service: Service, settings: ExecutionSettings) -> None:
        self.service = service
        outputs = {name: service.output(name) for name in (REPORTS, POSITIONS, "md.ticker", "md.candles")}
        self.state = StateStore(service, "execution-state", outputs, settings.dedupe_window)
        self.instruments = Mirror(service, "ref.instruments", r.Instrument)
        self.tickers = Mirror(service, "md.ticker", r.Ticker)
        self.closed_kept = settings.closed_orders_kept
        self.closed: deque[str] | None = None
        self.closed_generation = -1

    def _retire(self, changes: Changes, key: str) -> None:
        """Keep a closed order (a late cancel of it still gets its answer), up to `closed_orders_kept`."""
        if self.closed is None or self.closed_generation != self.state.generation:
            self.closed_generation = self.state.generation
            self.closed = deque(
                k for k, d in self.state.docs().items() if k.startswith("o|") and d["status"] in CLOSED
            )
        self.closed.append(key)
        while len(self.closed) > self.closed_kept:
            changes.delete(self.closed.popleft())

    async def on_order_event(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, OrderEvent)
        await self.instruments.wait()
        await self.tickers.wait()
        e = record
        instrument = self.instruments.get(e.symbol)

        def step(changes: Changes) -> list[Emit]:
            key = f"o|{e.account_id}|{e.order_id}"
            doc = changes.get(key)
            state = OrderState.from_doc(doc) if doc else OrderState.first(e)
            report, fill = state.apply(e, instrument)
            if report is None:
                return []
            changes.put(key, state.to_doc())
            if state.terminal:
                self._retire(changes, key)
            out = [Emit(REPORTS, e.account_id, report)]
            if fill is not None:
                pkey = f"p|{e.account_id}|{e.symbol}"
                position = Position.from_doc(changes.get(pkey))  # type: ignore[arg-type]
                position.fill(fill.side, fill.quantity, fill.price, fill.fee)
                changes.put(pkey, position.to_doc())  # type: ignore[arg-type]
                ticker = self.tickers.get(e.symbol)
                mark = ticker.last_price if ticker is not None else fill.price
                out.append(
                    Emit(
                        POSITIONS,
                        e.account_id,
                        r.PositionUpdated(
                            event_id=f"{e.event_id}:p",
                            ts_event=e.ts_event,
                            account_id=e.account_id,
                            symbol=e.symbol,
                            quantity=position.quantity,
                            average_cost=position.average_cost,
                            realized_pnl=position.realized,
                            unrealized_pnl=position.unrealized(mark),
                            mark_price=mark,
                            fees=position.fees,
                            quote_asset=instrument.quote_asset if instrument else "",
                            trade_id=fill.trade_id,
                        ),
                    )
                )
            return out

        try:
            await self.state.apply(f"order.events:{e.event_id}", step, delivery.partition)
        except IllegalTransition as exc:
            log.error("illegal order transition", extra={"order_id": e.order_id, "error": str(exc)})
            await self.service.dead_letter(delivery, self.service.codec.encode(e), exc)

    async def on_trade(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, r.Trade)
        t = record

        def step(changes: Changes) -> list[Emit]:
            key = f"t|{t.symbol}"
            stats = SymbolStats.from_doc(t.symbol, changes.get(key))
            made = stats.on_trade(t)
            if made is None:
                return []
            changes.put(key, stats.to_doc())
            ticker, candle = made
            return [Emit("md.ticker", t.symbol, ticker), Emit("md.candles", t.symbol, candle)]

        await self.state.apply(f"md.trades:{t.trade_id}", step, delivery.partition)


def build(settings: ExecutionSettings | None = None) -> Service:
    """The execution service, ready to run."""
    settings = settings or ExecutionSettings()
    service = Service(settings)
    worker = ExecutionWorker(service, settings)
    service.consume("order.events")(worker.on_order_event)
    service.consume("md.trades")(worker.on_trade)
    return service

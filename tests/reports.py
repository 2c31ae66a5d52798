"""Execution reports for collector tests: orders that go NEW -> PARTIALLY_FILLED -> FILLED."""

from __future__ import annotations

from decimal import Decimal

from orderstream.common import records as r

STEPS = (r.OrderStatus.ACCEPTED, r.OrderStatus.PARTIALLY_FILLED, r.OrderStatus.FILLED)


def report(order: int, seq: int, account: str = "acct-1", symbol: str = "BTC-USD",
           ts: int = 1_700_000_000_000_000_000) -> r.ExecutionReport:
    filled = [Decimal(0), Decimal("0.4"), Decimal(1)][seq - 1]
    return r.ExecutionReport(
        event_id=f"o{order}:{seq}", ts_event=ts + order * 1_000_000 + seq, account_id=account,
        order_id=f"o{order}", client_order_id=f"c{order}", symbol=symbol, sequence=seq, status=STEPS[seq - 1],
        side="BUY", order_type="LIMIT", quantity=Decimal(1), price=Decimal("64000.5"),
        filled_quantity=filled, remaining_quantity=Decimal(1) - filled,
        average_price=None if seq == 1 else Decimal("64000.5"), fees=filled * Decimal("0.002"),
        fee_asset="USD")


def lifecycle(orders: int, start: int = 0, **kw: object) -> list[r.ExecutionReport]:
    """Every report of `orders` orders numbered from `start`, in order."""
    return [report(o, s, **kw) for o in range(start, start + orders)  # type: ignore[arg-type]
            for s in (1, 2, 3)]

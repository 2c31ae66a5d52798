"""A basket's progress: child fills allocated back to the parent. No I/O."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.basket import children
from orderstream.common.trading import QUANTUM, TERMINAL, ZERO


def open_basket(b: r.SubmitBasket) -> dict[str, Any]:
    """The document of a new basket: one entry per leg."""
    return {
        "order_id": b.order_id,
        "client_order_id": b.client_order_id,
        "quantity": str(b.quantity),
        "legs": [
            {
                "order_id": c.order_id,
                "symbol": c.symbol,
                "side": c.side.value,
                "weight": str(leg.weight),
                "quantity": str(c.quantity),
                "filled": "0",
                "notional": "0",
                "status": None,
                "reason": None,
                "seq": 0,
            }
            for c, leg in zip(children(b), b.legs, strict=True)
        ],
    }


def on_child_report(doc: dict[str, Any], leg_index: int, rep: r.ExecutionReport) -> bool:
    """Allocate one child report to its leg; False when it was already seen."""
    leg = doc["legs"][leg_index]
    if rep.sequence <= leg["seq"]:
        return False
    leg["seq"] = rep.sequence
    leg["filled"] = str(rep.filled_quantity)
    if rep.average_price is not None:
        leg["notional"] = str(rep.average_price * rep.filled_quantity)
    if rep.status in TERMINAL:
        leg["status"], leg["reason"] = rep.status.value, rep.reason
    return True


def finished(doc: dict[str, Any], account_id: str, ts: int) -> r.BasketFilled | None:
    """The BasketFilled of a basket whose every leg is done; None while a leg is still working."""
    legs = doc["legs"]
    if any(leg["status"] is None for leg in legs):
        return None
    units = min(
        (Decimal(leg["filled"]) / Decimal(leg["weight"])).quantize(QUANTUM, rounding=ROUND_DOWN)
        for leg in legs
    )
    results, per_unit, any_fill = [], ZERO, False
    for leg in legs:
        filled = Decimal(leg["filled"])
        average = (Decimal(leg["notional"]) / filled).quantize(QUANTUM) if filled else None
        if average is not None:
            any_fill = True
            per_unit += (1 if leg["side"] == "BUY" else -1) * Decimal(leg["weight"]) * average
        results.append(
            r.BasketLegResult(
                order_id=leg["order_id"],
                symbol=leg["symbol"],
                side=r.Side(leg["side"]),
                quantity=Decimal(leg["quantity"]),
                filled_quantity=filled,
                average_price=average,
                status=leg["status"],
                reason=leg["reason"],
            )
        )
    complete = all(Decimal(leg["filled"]) == Decimal(leg["quantity"]) for leg in legs)
    return r.BasketFilled(
        event_id=f"{doc['order_id']}:basket",
        ts_event=ts,
        account_id=account_id,
        order_id=doc["order_id"],
        client_order_id=doc["client_order_id"],
        quantity=Decimal(doc["quantity"]),
        filled_units=units,
        average_price_per_unit=per_unit.quantize(QUANTUM) if any_fill else None,
        complete=complete,
        legs=results,
    )

"""The OrderRejected that tells a client why a service refused its command: one shape for every service."""

from __future__ import annotations

from orderstream.common import records as r


def submit_rejected(
    o: r.SubmitOrder | r.SubmitAlgoOrder, reason: str, message: str, tag: str
) -> r.OrderRejected:
    """A refused submission: the order's first event (sequence 1), with the order's details (a TWAP/VWAP
    parent's: a limit order at its limit price, or a market order without one)."""
    if isinstance(o, r.SubmitAlgoOrder):
        price = o.limit_price
        order_type = r.OrderType.MARKET if price is None else r.OrderType.LIMIT
    else:
        price, order_type = o.price, o.order_type
    return r.OrderRejected(
        event_id=f"{o.command_id}:{tag}",
        ts_event=o.ts_event,
        account_id=o.account_id,
        order_id=o.order_id,
        client_order_id=o.client_order_id,
        symbol=o.symbol,
        sequence=1,
        reason=reason,
        message=message,
        rejected_command="SubmitOrder",
        side=o.side,
        order_type=order_type,
        quantity=o.quantity,
        price=price,
    )


def command_rejected(
    cmd: r.CancelOrder | r.ReplaceOrder, reason: str, message: str, tag: str
) -> r.OrderRejected:
    """A refused cancel or replace: unsequenced (0), the order itself is unchanged."""
    return r.OrderRejected(
        event_id=f"{cmd.command_id}:{tag}",
        ts_event=cmd.ts_event,
        account_id=cmd.account_id,
        order_id=cmd.order_id,
        client_order_id=cmd.client_order_id,
        symbol=cmd.symbol,
        sequence=0,
        reason=reason,
        message=message,
        rejected_command=type(cmd).__name__,
    )

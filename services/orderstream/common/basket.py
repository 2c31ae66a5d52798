"""How a basket (index) order becomes child orders: one definition for collateral and router."""

from __future__ import annotations

from orderstream.common import records as r


def child_id(basket_order_id: str, leg: int) -> str:
    return f"{basket_order_id}/{leg}"


def basket_of(order_id: str) -> tuple[str, int] | None:
    """(basket id, leg index) of a child order id; None for an ordinary order."""
    head, sep, tail = order_id.rpartition("/")
    return (head, int(tail)) if sep and tail.isdigit() else None


def children(basket: r.SubmitBasket) -> list[r.SubmitOrder]:
    """The child orders of `basket`, leg by leg: quantity x weight each, limit when the leg has a price."""
    out = []
    for i, leg in enumerate(basket.legs):
        out.append(
            r.SubmitOrder(
                command_id=child_id(basket.command_id, i),
                ts_event=basket.ts_event,
                account_id=basket.account_id,
                order_id=child_id(basket.order_id, i),
                client_order_id=child_id(basket.client_order_id, i),
                symbol=leg.symbol,
                side=leg.side,
                order_type=r.OrderType.LIMIT if leg.price is not None else r.OrderType.MARKET,
                time_in_force=basket.time_in_force,
                quantity=basket.quantity * leg.weight,
                price=leg.price,
                stop_price=None,
                trailing_offset=None,
                trailing_offset_type=None,
                display_quantity=None,
                quote_budget=leg.quote_budget,
                post_only=False,
                expire_at=None,
                self_trade_prevention=r.SelfTradePrevention.CANCEL_NEWEST,
            )
        )
    return out

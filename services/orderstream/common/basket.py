"""How a parent order becomes child orders `<parent id>/<n>`: baskets and order lists, one definition
for collateral, router and matcher."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orderstream.common import records as r


def child_id(basket_order_id: str, leg: int) -> str:
    return f"{basket_order_id}/{leg}"


def basket_of(order_id: str) -> tuple[str, int] | None:
    """(basket id, leg index) of a child order id; None for an ordinary order."""
    head, sep, tail = order_id.rpartition("/")
    return (head, int(tail)) if sep and tail.isdigit() else None


def children(basket: r.SubmitBasket) -> list[r.SubmitOrder]:
    """The child orders of `basket`, leg by leg: quantity x weight each, limit when the leg has a price."""
    return [
        _child(basket, i, symbol=leg.symbol, side=leg.side,
               order_type=r.OrderType.LIMIT if leg.price is not None else r.OrderType.MARKET,
               time_in_force=basket.time_in_force, quantity=basket.quantity * leg.weight, price=leg.price,
               stop_price=None, quote_budget=leg.quote_budget, expire_at=None,
               self_trade_prevention=r.SelfTradePrevention.CANCEL_NEWEST)
        for i, leg in enumerate(basket.legs)
    ]


def _child(parent: r.SubmitBasket | r.SubmitOrderList, i: int, **fields: Any) -> r.SubmitOrder:
    """Child order `i` of `parent`: its ids derive from the parent's, the rest is `fields`."""
    return r.SubmitOrder(
        command_id=child_id(parent.command_id, i),
        ts_event=parent.ts_event,
        account_id=parent.account_id,
        order_id=child_id(parent.order_id, i),
        client_order_id=child_id(parent.client_order_id, i),
        trailing_offset=None,
        trailing_offset_type=None,
        display_quantity=None,
        post_only=False,
        **fields,
    )


def list_orders(lst: r.SubmitOrderList) -> list[r.SubmitOrder]:
    """Every order of an order list, in its order (a bracket: entry, take-profit, stop-loss)."""
    return [
        _child(lst, i, symbol=lst.symbol, side=o.side, order_type=o.order_type, time_in_force=o.time_in_force,
               quantity=o.quantity, price=o.price, stop_price=o.stop_price, quote_budget=o.quote_budget,
               expire_at=o.expire_at, self_trade_prevention=lst.self_trade_prevention)
        for i, o in enumerate(lst.orders)
    ]


def placed_at_once(lst: r.SubmitOrderList) -> list[r.SubmitOrder]:
    """The orders of a list that go to the book when it is placed: an OCO's legs, a bracket's entry
    (its exits are placed as the entry fills)."""
    orders = list_orders(lst)
    return orders if lst.contingency == r.ContingencyType.OCO else orders[:1]


def ioc_child(parent: dict[str, Any], n: int, command_id: str, ts: int, symbol: str, side: r.Side,
              quantity: Decimal, price: Decimal | None) -> r.SubmitOrder:
    """Child `n` of a parent the router works over time (a TWAP/VWAP slice, an index round's leg):
    an IOC limit at `price`, a market order without one. `parent`: its stored document."""
    return r.SubmitOrder(
        command_id=command_id,
        ts_event=ts,
        account_id=parent["account_id"],
        order_id=child_id(parent["order_id"], n),
        client_order_id=child_id(parent["client_order_id"], n),
        symbol=symbol,
        side=side,
        order_type=r.OrderType.MARKET if price is None else r.OrderType.LIMIT,
        time_in_force=r.TimeInForce.IOC,
        quantity=quantity,
        price=price,
        stop_price=None,
        trailing_offset=None,
        trailing_offset_type=None,
        display_quantity=None,
        quote_budget=None,
        post_only=False,
        expire_at=None,
        self_trade_prevention=r.SelfTradePrevention.CANCEL_NEWEST,
    )

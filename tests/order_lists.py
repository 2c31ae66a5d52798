"""Order lists (OCO, bracket) for the tests: the commands the gateway would send."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from orderstream.common import records as r


def leg(side: str, order_type: str, qty: str, price: str | None = None,
        stop: str | None = None) -> dict[str, Any]:
    """One order of a list, as the fields of its ListOrder."""
    return {"side": side, "order_type": order_type, "quantity": D(qty),
            "price": None if price is None else D(price), "stop_price": None if stop is None else D(stop)}


def order_list(kind: str, *orders: dict[str, Any], acct: str = "T", list_id: str = "L",
               symbol: str = "BTC-USD") -> r.SubmitOrderList:
    """An OCO or BRACKET of `orders` (see `leg`); its client order id is `k<list id>`."""
    return r.SubmitOrderList(
        command_id=f"c-{list_id}", ts_event=1, account_id=acct, order_id=list_id,
        client_order_id=f"k{list_id}", symbol=symbol, contingency=kind,
        self_trade_prevention="CANCEL_NEWEST", orders=[r.ListOrder(time_in_force="GTC", **o) for o in orders],
    )

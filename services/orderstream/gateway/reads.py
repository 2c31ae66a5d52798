"""The gateway's reads: the caller's open orders, order history and balances (the read model the
collector writes, common/history.py) and one order (order.get: the gateway's order index and the
order's latest stored execution report)."""

from __future__ import annotations

from typing import Any

from orderstream.common import history
from orderstream.gateway import api
from orderstream.gateway.auth import Principal
from orderstream.gateway.core import Core, answers, jsonable, parse


class Reads(Core):
    """Read-only operations (the `read` permission)."""

    @answers("orders.open")
    async def open_orders(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("read")
        q = parse(api.OpenOrders, params)
        page = await history.open_orders(self.db, who.account_id, limit=q.limit, after=q.after)
        return {"orders": [jsonable(d) for d in page.orders], "next": page.next_cursor}

    @answers("orders.history")
    async def history(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("read")
        q = parse(api.History, params)
        page = await history.order_history(
            self.db, who.account_id, symbol=q.symbol, status=q.status, limit=q.limit, before=q.before
        )
        return {"orders": [jsonable(d) for d in page.orders], "next": page.next_cursor}

    @answers("balances.get")
    async def balances(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        """Free and held per asset: the collector's `balances` documents (newest per-account sequence)."""
        who.require("read")
        return {"balances": await history.balances(self.db, who.account_id)}

    @answers("order.get")
    async def get(self, who: Principal, params: dict[str, Any]) -> dict[str, Any]:
        who.require("read")
        c = parse(api.CancelOrder, params)
        doc = await self.order_doc(who, c.order_id)
        state = await self.db[history.ORDERS].find_one({"_id": c.order_id, "account_id": who.account_id})
        return {
            "order_id": c.order_id,
            "client_order_id": doc["client_order_id"],
            "symbol": doc["symbol"],
            "state": jsonable(state) if state else None,
        }

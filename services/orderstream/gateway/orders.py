"""The gateway's order entry: orders, baskets, OCO and bracket lists, TWAP/VWAP parents, quotes and
index orders, cancels and replaces, as commands on order.commands.

Every new order is validated against its instrument (the refusal names the field), takes a token of
its key's rate limit, and is refused at once while too many of this gateway's orders are out in the
order path (backpressure). It is written once per (account, client_order_id): a repeat answers the
original order id (idempotency). Commands go through the group commit (submitter.py): one send and
one acknowledgement wait for every command that arrives meanwhile, in arrival order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from decimal import Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.index import Pricing, fit
from orderstream.gateway import api, quotes
from orderstream.gateway.auth import Principal
from orderstream.gateway.core import BASKET, INDEX, QUOTES, Core, answers, parse
from orderstream.gateway.errors import ApiError
from orderstream.gateway.ratelimit import SharedBuckets

Limit = tuple[SharedBuckets, str]  # a rate-limit bucket set and the key to take a token of


class OrderEntry(Core):
    """Order entry operations (the `trade` permission)."""

    async def place(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_pending(who, params, request_id))

    async def place_pending(
        self, who: Principal, params: dict[str, Any], request_id: str, limit: Limit | None = None
    ) -> Awaitable[dict[str, Any]]:
        """Validate and queue an order now (in request order); the awaitable answers once it is sent.
        `limit`: the bucket and key whose token it takes (default: the API key's)."""
        who.require("trade")
        await self.take_order_token(who, limit)
        o = parse(api.PlaceOrder, params)
        await self.instruments_ready()
        api.check_instrument(o, self.instruments.get(o.symbol))
        return self.submit(who, o.symbol, request_id, r.SubmitOrder, o.model_dump())

    async def place_basket(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_basket_pending(who, params, request_id))

    async def place_basket_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        who.require("trade")
        await self.take_order_token(who)
        b = parse(api.PlaceBasket, params)
        await self.instruments_ready()
        api.check_basket(b, self.instruments)
        legs = [leg.symbol for leg in b.legs]
        return self.submit(who, BASKET, request_id, r.SubmitBasket, b.model_dump(), legs=legs)

    async def place_oco(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_oco_pending(who, params, request_id))

    async def place_oco_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        who.require("trade")
        await self.take_order_token(who)
        o = parse(api.PlaceOco, params)
        await self.instruments_ready()
        fields = api.oco_fields(o, self.instruments.get(o.symbol))
        return self.submit(who, o.symbol, request_id, r.SubmitOrderList, fields, legs=[o.symbol] * 2)

    async def place_bracket(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_bracket_pending(who, params, request_id))

    async def place_bracket_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        who.require("trade")
        await self.take_order_token(who)
        b = parse(api.PlaceBracket, params)
        await self.instruments_ready()
        fields = api.bracket_fields(b, self.instruments.get(b.symbol))
        # the exits (/1, /2) come from the matcher once the entry fills: only the entry is awaited
        legs = [b.symbol] * 3
        return self.submit(who, b.symbol, request_id, r.SubmitOrderList, fields, placed=1, legs=legs)

    async def place_algo(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_algo_pending(who, params, request_id))

    async def place_algo_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        """A TWAP/VWAP parent: SubmitAlgoOrder on order.commands; its progress comes on algo.events."""
        who.require("trade")
        await self.take_order_token(who)
        a = parse(api.PlaceAlgoOrder, params)
        await self.instruments_ready()
        now = time.time_ns()
        api.check_algo(a, self.instruments.get(a.symbol), now)
        start = a.start_at if a.start_at is not None else now
        fields = a.model_dump(exclude={"start_at", "duration_ms"})
        fields |= {"start_at": start, "end_at": start + a.duration_ms * 1_000_000}
        return self.submit(who, a.symbol, request_id, r.SubmitAlgoOrder, fields, algo=a.algo.value)

    @answers("quote.request")
    async def quote(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """What a collateral amount buys of an index now, from the depth snapshots (common/index.py)."""
        who.require("trade")
        q = parse(api.RequestQuote, params)
        await self.instruments_ready()
        legs, asset = quotes.index_legs(q.legs, self.instruments.latest)
        books = quotes.books_of(legs, self.depth)
        asks = {s: a for s, (_, a) in books.items()}
        fitted = fit(legs, q.collateral_amount, asks, self.instruments.latest, Pricing.TAKER)
        quote_id = f"q-{uuid.uuid4().hex[:24]}"
        expires_at = time.time_ns() + quotes.QUOTE_TTL_NS
        answer = quotes.view(quote_id, expires_at, asset, q.collateral_amount, fitted, legs, books)
        best = {s: (str(a[0][0]) if a else None) for s, (_, a) in books.items()}
        await self.db[QUOTES].insert_one({
            "_id": quote_id,
            "account_id": who.account_id,
            "expires": expires_at,
            "legs": [{**x, "best_ask": best[x["symbol"]]} for x in answer["legs"]],
        })
        return answer

    async def place_index(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        return await (await self.place_index_pending(who, params, request_id))

    async def place_index_pending(
        self, who: Principal, params: dict[str, Any], request_id: str
    ) -> Awaitable[dict[str, Any]]:
        """An index order by collateral amount; each leg's price cap from the quote or the book and the
        slippage bound (gateway/quotes.py)."""
        who.require("trade")
        await self.take_order_token(who)
        o = parse(api.PlaceIndexOrder, params)
        await self.instruments_ready()
        legs, asset = quotes.index_legs(o.legs, self.instruments.latest)
        quote = None
        if o.quote_id is not None:
            quote = await self.db[QUOTES].find_one({"_id": o.quote_id, "account_id": who.account_id})
            if quote is None or quote["expires"] < time.time_ns():
                raise ApiError(40001, "invalid quote_id: no such quote, or it expired",
                               {"field": "quote_id", "issue": "unknown or expired"})
            if not quotes.same_legs(quote, legs):
                raise ApiError(40001, "invalid quote_id: the quote is of other legs or weights",
                               {"field": "quote_id", "issue": "other legs"})
        caps: dict[str, Decimal | None] = {leg.symbol: None for leg in legs}
        if quote is not None or o.max_slippage is not None:
            refs = quotes.references(quote, legs, quotes.books_of(legs, self.depth))
            slippage = o.max_slippage or Decimal(0)
            caps = {s: quotes.price_cap(ref, slippage, self.instruments.latest[s]) for s, ref in refs.items()}
        fields = {
            "client_order_id": o.client_order_id,
            "asset": asset,
            "collateral_amount": o.collateral_amount,
            "legs": [
                {"symbol": leg.symbol, "weight": leg.weight, "price_cap": caps[leg.symbol]} for leg in legs
            ],
            "quote_id": o.quote_id,
            "max_slippage": o.max_slippage,
        }
        return self.submit(who, INDEX, request_id, r.SubmitIndexOrder, fields, legs=[x.symbol for x in legs])

    @answers("order.index.update")
    async def update_index(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A new collateral amount for an index order: collateral holds an increase, the router takes it."""
        who.require("trade")
        u = parse(api.UpdateIndexOrder, params)
        doc = await self.order_doc(who, u.order_id)
        if doc["symbol"] != INDEX:
            raise ApiError(40905, f"{u.order_id} is not an index order", {"field": "order_id"}, status=409)
        amount = u.collateral_amount
        await self.order_command(who, r.UpdateIndexOrder, doc, request_id, collateral_amount=amount)
        return {"order_id": u.order_id, "update": "requested"}

    async def order_command(
        self,
        who: Principal,
        kind: type[r.CancelOrder | r.ReplaceOrder | r.UpdateIndexOrder],
        doc: dict[str, Any],
        request_id: str,
        **fields: Any,
    ) -> None:
        """A command about the caller's order `doc` (order_doc's) onto order.commands."""
        if kind is not r.UpdateIndexOrder:
            fields["symbol"] = doc["symbol"]
        await self.enqueue(
            "order.commands",
            who.account_id,
            kind(
                command_id=f"gw-{uuid.uuid4().hex}",
                ts_event=time.time_ns(),
                account_id=who.account_id,
                order_id=doc["order_id"],
                client_order_id=doc["client_order_id"],
                **fields,
            ),
            request_id,
        )

    async def take_order_token(self, who: Principal, limit: Limit | None = None) -> None:
        """Refuse a new order while too many of this gateway's orders are out in the order path
        (50302; first, so that a refusal under overload costs neither a token nor validation),
        or over the key's rate limit, or `limit`'s (42901)."""
        if self.outstanding.busy():
            raise ApiError(
                50302,
                f"busy: {self.outstanding.count} orders are in the order path; send it again shortly",
                {"in_flight": self.outstanding.count, "bound": self.outstanding.bound},
                status=503,
                headers={"Retry-After": "1"},
            )
        buckets, key = limit or (self.buckets, who.key_id)
        retry = await buckets.take(key)
        if retry:
            raise ApiError(
                42901,
                "order rate limit reached",
                {"retry_after_s": retry},
                status=429,
                headers={"Retry-After": str(max(1, round(retry)))},
            )

    def submit(
        self,
        who: Principal,
        symbol: str,
        request_id: str,
        kind: type[r.SubmitOrder | r.SubmitBasket | r.SubmitOrderList | r.SubmitAlgoOrder
                   | r.SubmitIndexOrder],
        fields: dict[str, Any],
        placed: int | None = None,
        **extra: Any,
    ) -> Awaitable[dict[str, Any]]:
        """Queue the command once per (account, client_order_id); a repeat gets the original order id.
        `placed`: how many of its child orders are placed at once (default: every leg)."""
        client_order_id = fields["client_order_id"]
        order_id = f"{symbol}-{uuid.uuid4().hex[:16]}"
        doc = {
            "_id": f"{who.account_id}|{client_order_id}",
            "order_id": order_id,
            "account_id": who.account_id,
            "client_order_id": client_order_id,
            "symbol": symbol,
            "ts": time.time(),
            **extra,
        }
        command = kind(
            command_id=f"gw-{uuid.uuid4().hex}",
            ts_event=time.time_ns(),
            account_id=who.account_id,
            order_id=order_id,
            **fields,
        )
        legs = len(extra["legs"]) if "legs" in extra else 0
        ids = [f"{order_id}/{i}" for i in range(placed or legs)] if legs else [order_id]
        if "algo" in extra or symbol == INDEX:  # its children come later, slice by slice or round by round
            ids = []  # (maybe much later): none is awaited
        self.outstanding.sent(who.account_id, ids)  # before the send: its report may come at once
        sent = self.enqueue("order.commands", who.account_id, command, request_id, doc)

        async def answer() -> dict[str, Any]:
            new = False
            try:
                result = await sent
                new = not result["duplicate"]
            finally:
                if not new:  # not sent, or sent before under the original's order id
                    for i in ids:
                        self.outstanding.reported(who.account_id, i, report=False)
            placed = api.OrderPlaced(
                order_id=result["order_id"], client_order_id=client_order_id, duplicate=result["duplicate"]
            )
            return placed.model_dump(mode="json")

        return answer()

    @answers("order.cancel")
    async def cancel(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        who.require("trade")
        c = parse(api.CancelOrder, params)
        doc = await self.order_doc(who, c.order_id, to_change=True)
        await self.order_command(who, r.CancelOrder, doc, request_id)
        return {"order_id": c.order_id, "cancel": "requested"}

    @answers("order.replace")
    async def replace(self, who: Principal, params: dict[str, Any], request_id: str) -> dict[str, Any]:
        who.require("trade")
        c = parse(api.ReplaceOrder, params)
        doc = await self.order_doc(who, c.order_id, to_change=True)
        if doc["symbol"] == INDEX:
            raise ApiError(
                40905,
                "an index order is changed with order.index.update (a new collateral amount)",
                {"field": "order_id"},
                status=409,
            )
        if doc.get("algo") or (doc.get("legs") and doc["order_id"] == c.order_id):
            what = "a TWAP/VWAP parent" if doc.get("algo") else "an order list (OCO, bracket)"
            raise ApiError(40904, f"{what} cannot be replaced; cancel it", {"field": "order_id"}, status=409)
        instrument = self.instruments.get(doc["symbol"])
        if instrument is not None:
            api.check_increments(instrument, c.quantity, price=c.price)
        await self.order_command(who, r.ReplaceOrder, doc, request_id, quantity=c.quantity, price=c.price)
        return {"order_id": c.order_id, "replace": "requested"}

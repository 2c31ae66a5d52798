"""Binance's order lists on Orderstream's own (docs/order-lists.md): an OCO is our OCO, an OTOCO our
bracket, and an OTO, whose single pending order our lists cannot express, is refused.

- OCO (`POST /api/v3/orderList/oco`, and the deprecated `/api/v3/order/oco` with its own parameter
  names): the LIMIT_MAKER leg is our order `<list id>/0`, a GTC limit (not post-only: the gateway refuses
  one that would take at the depth it sees, and the prices out of Binance's order against the last
  trade); the STOP_LOSS or STOP_LOSS_LIMIT leg is `/1`. TAKE_PROFIT legs and a stop-market buy (it
  cannot be funded) are refused.
- OTOCO (`/api/v3/orderList/otoco`): the working order is the bracket's entry `/0`; the pending above and
  below orders its take-profit limit (LIMIT_MAKER) `/1` and stop-loss `/2`, on the other side and for
  the working quantity. Unlike Binance, the exits are placed as the entry fills, not once it has filled,
  and cancelling the entry leaves the exits already placed (they protect what filled).
- The list's client id is `listClientOrderId`; its orders' are `<listClientOrderId>/<n>` (legs' own
  client ids are refused). orderListId is the list document's own number (binance.py, `list_number`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from orderstream.common import records as r
from orderstream.common.trading import TERMINAL
from orderstream.gateway.auth import Principal
from orderstream.gateway.binance import (
    MAX_BINANCE_ID,
    REJECT_MESSAGES,
    RELATION,
    STP_IN,
    BinanceApi,
    BnError,
    Order,
    Params,
    Route,
    canceled_view,
    list_kind,
    list_number,
    mandatory,
    order_ids,
    report_state,
    result_view,
    translated,
)
from orderstream.gateway.binance_market import bn_symbol
from orderstream.gateway.core import BASKET, INDEX
from orderstream.gateway.errors import ApiError

SIDES = {"BUY": 0, "SELL": 0}
LEG_TYPES = dict.fromkeys(
    ("LIMIT_MAKER", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"), 0
)
TIME_IN_FORCE = {"GTC": 0, "IOC": 0, "FOK": 0}
# Per-order parameters Binance takes that our lists have no place for: refused, never dropped silently.
NOT_TAKEN = ("ClientOrderId", "IcebergQty", "TrailingDelta", "StrategyId", "StrategyType", "PegPriceType",
             "PegOffsetType", "PegOffsetValue")
LEGACY_NOT_TAKEN = tuple(f"{leg}{p}" for leg in ("limit", "stop") for p in NOT_TAKEN if p != "TrailingDelta")
ENDED = {"FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED"}  # Binance's final statuses


def unsupported(why: str) -> BnError:
    return BnError(-1014, f"Unsupported order combination: {why}")


def not_taken(name: str, why: str) -> BnError:
    return BnError(-1106, f"Parameter '{name}' sent when not required. ({why})")


@dataclass(frozen=True)
class Exits:
    """The two linked orders of an OCO (or an OTOCO's pending pair) in our terms, and the Binance
    parameter each of our fields came from (for refusals)."""

    take: Decimal  # the limit (LIMIT_MAKER) leg's price
    stop: Decimal
    stop_limit: Decimal | None
    names: dict[str, str]


def exits(params: Params, side: str, prefix: str = "") -> Exits:
    """Binance's above/below pair of `orderList/oco` (`prefix` ""), or of `orderList/otoco` ("pending"),
    on `side`: the LIMIT_MAKER leg above a sell's stop (below a buy's), the stop STOP_LOSS[_LIMIT]."""

    def name(position: str, field: str) -> str:
        return f"{prefix}{position.capitalize()}{field}" if prefix else f"{position}{field}"

    take_at, stop_at = ("above", "below") if side == "SELL" else ("below", "above")
    kinds: dict[str, str] = {}
    for position in ("above", "below"):
        kind = params.choice(name(position, "Type"), LEG_TYPES)
        if kind is None:
            raise mandatory(name(position, "Type"))
        kinds[position] = kind
        for field in NOT_TAKEN:
            if params.get(name(position, field)) is not None:
                raise not_taken(name(position, field), "the orders of a list have the client ids "
                                "<listClientOrderId>/<n>" if field == "ClientOrderId" else
                                "not available on the orders of a list")
    if kinds[take_at] != "LIMIT_MAKER" or kinds[stop_at] not in ("STOP_LOSS", "STOP_LOSS_LIMIT"):
        raise unsupported(f"a {side} list's {name(take_at, 'Type')} must be LIMIT_MAKER and its "
                          f"{name(stop_at, 'Type')} STOP_LOSS or STOP_LOSS_LIMIT (TAKE_PROFIT legs are "
                          "not supported)")
    if params.get(name(take_at, "StopPrice")) is not None:
        raise not_taken(name(take_at, "StopPrice"), "a LIMIT_MAKER has no stop price")
    stop_limit = kinds[stop_at] == "STOP_LOSS_LIMIT"
    if not stop_limit and params.get(name(stop_at, "Price")) is not None:
        raise not_taken(name(stop_at, "Price"), "a STOP_LOSS has no limit price")
    return Exits(
        take=need(params, name(take_at, "Price")),
        stop=need(params, name(stop_at, "StopPrice")),
        stop_limit=stop_limit_of(
            params, name(stop_at, "Price"), name(stop_at, "TimeInForce"), side, stop_limit
        ),
        names={"price": name(take_at, "Price"), "take_profit_price": name(take_at, "Price"),
               "stop_price": name(stop_at, "StopPrice"), "stop_limit_price": name(stop_at, "Price")},
    )


def legacy_exits(params: Params, side: str) -> Exits:
    """The deprecated `order/oco`'s pair: a limit at `price`, a stop at `stopPrice` (a stop-limit at
    `stopLimitPrice` when sent)."""
    for name in (*LEGACY_NOT_TAKEN, "trailingDelta"):
        if params.get(name) is not None:
            raise not_taken(name, "not available on the orders of a list")
    stop_limit = params.get("stopLimitPrice") is not None
    return Exits(
        take=need(params, "price"),
        stop=need(params, "stopPrice"),
        stop_limit=stop_limit_of(params, "stopLimitPrice", "stopLimitTimeInForce", side, stop_limit),
        names={"price": "price", "stop_price": "stopPrice", "stop_limit_price": "stopLimitPrice"},
    )


def need(params: Params, name: str) -> Decimal:
    value = params.decimal(name, required=True)
    assert value is not None
    return value


def stop_limit_of(params: Params, price: str, tif: str, side: str, limit: bool) -> Decimal | None:
    """A stop leg's limit price (None for a stop-market): a stop-limit rests GTC once triggered here."""
    time_in_force = params.choice(tif, TIME_IN_FORCE)
    if not limit:
        if side == "BUY":
            raise unsupported("a BUY stop leg must be a stop-limit (a stop-market buy has no bound on what "
                              "it costs, so it cannot be funded)")
        return None
    if time_in_force is None:
        raise mandatory(tif)
    if time_in_force != "GTC":
        raise unsupported(f"{tif} must be GTC (the stop-limit order of a list rests until it trades)")
    return need(params, price)


def stp(params: Params) -> str:
    mode = params.choice("selfTradePreventionMode", dict.fromkeys(STP_IN, 0), "EXPIRE_TAKER")
    return STP_IN[mode or "EXPIRE_TAKER"].value


def client_id(params: Params) -> str:
    return params.get("listClientOrderId") or f"os-{uuid.uuid4().hex[:22]}"  # made when absent, as Binance


# -- placing -------------------------------------------------------------------------------------


async def new_oco(api: BinanceApi, request: web.Request, params: Params, who: Principal | None) -> Any:
    """POST /api/v3/orderList/oco and the deprecated /api/v3/order/oco: our OCO."""
    assert who is not None
    await api.gw.instruments_ready()
    i = api.instrument(params)
    side = params.choice("side", SIDES)
    if side is None:
        raise mandatory("side")
    quantity = need(params, "quantity")
    pair = legacy_exits(params, side) if request.path.endswith("/order/oco") else exits(params, side)
    api.check_filters(i, quantity, pair.take, pair.stop, None, "OCO")
    if pair.stop_limit is not None:
        api.check_filters(i, quantity, pair.stop_limit, None, None, "OCO")
    low, high = (pair.stop, pair.take) if side == "SELL" else (pair.take, pair.stop)
    ticker = api.market.tickers.get(i.symbol)
    last = ticker.last_price if ticker is not None and ticker.last_price else None
    if not (low < last < high if last is not None else low < high):  # Binance's: stop and limit either side
        raise BnError(-2010, f"{RELATION} ('{pair.names['stop_price']}' {pair.stop} and "
                             f"'{pair.names['price']}' {pair.take} must be either side of the last price "
                             f"{last if last is not None else '(none yet)'})")
    would_take(api, i, side, pair.take)
    fields = {
        "client_order_id": client_id(params), "symbol": i.symbol, "side": side, "quantity": str(quantity),
        "price": str(pair.take), "stop_price": str(pair.stop), "self_trade_prevention": stp(params),
    }
    if pair.stop_limit is not None:
        fields["stop_limit_price"] = str(pair.stop_limit)
    return await place(api, who, i, request, params, fields, pair.names)


async def new_otoco(api: BinanceApi, request: web.Request, params: Params, who: Principal | None) -> Any:
    """POST /api/v3/orderList/otoco: our bracket (the working order its entry, the pending pair its exits)."""
    assert who is not None
    await api.gw.instruments_ready()
    i = api.instrument(params)
    working = params.choice("workingType", {"LIMIT": 0, "LIMIT_MAKER": 0})
    side, pending_side = params.choice("workingSide", SIDES), params.choice("pendingSide", SIDES)
    for name, value in (("workingType", working), ("workingSide", side), ("pendingSide", pending_side)):
        if value is None:
            raise mandatory(name)
    assert side is not None and pending_side is not None
    for field in NOT_TAKEN:
        if params.get(f"working{field}") is not None:
            raise not_taken(f"working{field}", "not available on the orders of a list")
    price, quantity = need(params, "workingPrice"), need(params, "workingQuantity")
    tif = params.choice("workingTimeInForce", TIME_IN_FORCE)
    if working == "LIMIT" and tif is None:
        raise mandatory("workingTimeInForce")
    if working == "LIMIT_MAKER":
        if tif not in (None, "GTC"):
            raise not_taken("workingTimeInForce", "a LIMIT_MAKER rests GTC")
        would_take(api, i, side, price)
    if pending_side == side:
        raise unsupported("pendingSide must be the other side of workingSide (the pending orders close what "
                          "the working order opens)")
    pending = need(params, "pendingQuantity")
    if pending != quantity:
        raise unsupported("pendingQuantity must equal workingQuantity (the pending orders are placed "
                          "for what the working order fills)")
    pair = exits(params, pending_side, "pending")
    api.check_filters(i, quantity, price, None, None, "OTOCO")
    api.check_filters(i, quantity, pair.take, pair.stop, None, "OTOCO")
    fields = {
        "client_order_id": client_id(params), "symbol": i.symbol, "side": side, "quantity": str(quantity),
        "order_type": "LIMIT", "price": str(price), "time_in_force": tif or "GTC",
        "take_profit_price": str(pair.take), "stop_price": str(pair.stop),
        "self_trade_prevention": stp(params),
    }
    if pair.stop_limit is not None:
        fields["stop_limit_price"] = str(pair.stop_limit)
    names = {**pair.names, "price": "workingPrice", "quantity": "workingQuantity",
             "time_in_force": "workingTimeInForce", "side": "workingSide"}
    return await place(api, who, i, request, params, fields, names, bracket=True)


async def new_oto(api: BinanceApi, request: web.Request, params: Params, who: Principal | None) -> Any:
    raise BnError(-1020, "This operation is not supported. (An OTO links one pending order to the working "
                         "order; Orderstream's lists link a take-profit and a stop-loss together: use "
                         "POST /api/v3/orderList/otoco.)")


def would_take(api: BinanceApi, i: r.Instrument, side: str, price: Decimal) -> None:
    """Binance's refusal of a LIMIT_MAKER that would take, at the depth this gateway sees: our list's
    limit leg is a plain limit order, so this check (not atomic) is all that keeps it a maker."""
    bid, ask = api.streams.best(i.symbol)
    if (side == "SELL" and bid[0] and price <= bid[0]) or (side == "BUY" and ask[0] and price >= ask[0]):
        raise BnError(-2010, "Order would immediately match and take.")


async def place(
    api: BinanceApi,
    who: Principal,
    i: r.Instrument,
    request: web.Request,
    params: Params,
    fields: dict[str, Any],
    names: dict[str, str],
    *,
    bracket: bool = False,
) -> dict[str, Any]:
    """Place the list through the gateway's order path and wait (bounded) for the first report of each
    order placed at once (an OCO's two, a bracket's entry); Binance's order list answer."""
    params.choice("newOrderRespType", {"ACK": 0, "RESULT": 0, "FULL": 0})  # every answer has orderReports
    if api.status(i) != "TRADING":
        raise BnError(-1013, "Market is closed.")
    cid = fields["client_order_id"]
    awaited = {f"{cid}/0"} if bracket else {f"{cid}/0", f"{cid}/1"}
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    pending_of = api.gw.place_bracket_pending if bracket else api.gw.place_oco_pending
    with api.watch(who.account_id, *sorted(awaited)) as reports:
        try:
            placed = await (await pending_of(who, fields, request_id))
        except ApiError as e:
            raise translated(e, names=names) from None
        except Exception as exc:
            raise translated(api.gw_failure(exc)) from None
        doc = await api.doc_by_client_id(who, cid)
        for oid in order_ids(doc):  # its orders' commands, for the user data stream's reports
            command = api.command_of(doc, oid)
            if command is not None:
                api.remember(command)
        heard: set[str] = set()
        seen = [] if placed["duplicate"] else await api.outcome(reports, False, each(awaited, heard))
    rejected = next((rep for rep in seen if rep.status == r.OrderStatus.REJECTED), None)
    if rejected is not None:
        reason = rejected.reason or "REJECTED"
        raise BnError(-2010, REJECT_MESSAGES.get(reason, f"Order rejected: {reason}."))
    states = await api.states_of(who, order_ids(doc)) if placed["duplicate"] else latest(seen)
    head, views = list_view(api, doc, states)
    return {**head, "orderReports": [result_view(v) for v in views]}


def each(client_ids: set[str], heard: set[str], ended: bool = False) -> Any:
    """`outcome`'s end: a report (a terminal one, when `ended`) of every order in `client_ids` came."""

    def done(rep: r.ExecutionReport) -> bool:
        if not ended or rep.status in TERMINAL:
            heard.add(rep.client_order_id)
        return heard >= client_ids

    return done


def latest(reports: list[r.ExecutionReport]) -> dict[str, dict[str, Any]]:
    """Each order's state after the last of its reports."""
    return {rep.order_id: report_state(rep) for rep in reports}


# -- reading -------------------------------------------------------------------------------------


def list_view(
    api: BinanceApi, doc: dict[str, Any], states: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Binance's order list object, and the order object of each of its orders."""
    ids = order_ids(doc)
    views = [api.order_view(Order(doc, oid, api.command_of(doc, oid), states.get(oid))) for oid in ids]
    entry = views[0]
    if list_kind(doc) == "BRACKET" and entry["status"] in ENDED and not Decimal(entry["executedQty"]):
        for v in views[1:]:  # the entry ended with nothing filled: no exit ever comes
            if v["status"] == "PENDING_NEW":
                v["status"] = "EXPIRED"
    statuses = [v["status"] for v in views]
    done = all(s in ENDED for s in statuses)
    instrument = api.gw.instruments.get(doc["symbol"])
    head = {
        "orderListId": list_number(doc, ids[0]),
        "contingencyType": "OCO" if list_kind(doc) == "OCO" else "OTO",
        "listStatusType": "ALL_DONE" if done else "EXEC_STARTED",
        "listOrderStatus": ("REJECT" if "REJECTED" in statuses else "ALL_DONE") if done else "EXECUTING",
        "listClientOrderId": doc["client_order_id"],
        "transactionTime": int(doc["ts"] * 1000),
        "symbol": bn_symbol(instrument) if instrument else doc["symbol"].replace("-", ""),
        "orders": [{k: v[k] for k in ("symbol", "orderId", "clientOrderId")} for v in views],
    }
    return head, views


def list_query() -> dict[str, Any]:
    """The idempotency documents of order lists (as list_kind tells them)."""
    return {"legs": {"$exists": True}, "symbol": {"$nin": [BASKET, INDEX]}}


async def find_list(
    api: BinanceApi, who: Principal, params: Params, names: tuple[str, str]
) -> dict[str, Any]:
    """The list a request names by orderListId or its list client id."""
    number_ = params.integer(names[0], None, 0, MAX_BINANCE_ID)
    cid = params.get(names[1])
    if number_ is None and cid is None:
        raise BnError(-1102, f"Param '{names[1]}' or '{names[0]}' must be sent, but both were empty/null!")
    if number_ is not None:
        docs = await api.docs_near(who, number_)
        found = next((d for d in docs if list_number(d, f"{d['order_id']}/0") == number_), None)
    else:
        assert cid is not None
        doc, order_id = await api.by_client_id(who, cid)
        found = doc if doc is not None and order_id == doc["order_id"] and list_kind(doc) else None
    if found is None:
        raise BnError(-2013, "Order list does not exist.")
    return found


async def get_list(api: BinanceApi, request: web.Request, params: Params, who: Principal | None) -> Any:
    """GET /api/v3/orderList."""
    assert who is not None
    who.require("read")
    await api.gw.instruments_ready()
    doc = await find_list(api, who, params, ("orderListId", "origClientOrderId"))
    return list_view(api, doc, await api.states_of(who, order_ids(doc)))[0]


async def all_lists(api: BinanceApi, request: web.Request, params: Params, who: Principal | None) -> Any:
    """GET /api/v3/allOrderList: by orderListId (creation time), from `fromId` or `startTime` on."""
    assert who is not None
    who.require("read")
    await api.gw.instruments_ready()
    limit = params.integer("limit", 500, 1, 1000)
    assert limit is not None
    from_id = params.integer("fromId", None, 0, MAX_BINANCE_ID)
    window = (params.integer("startTime"), params.integer("endTime"))
    docs = [d for d in await api.paged_docs(who, list_query(), from_id, window, limit) if list_kind(d)]
    return await views_of(api, who, docs)


async def open_lists(api: BinanceApi, request: web.Request, params: Params, who: Principal | None) -> Any:
    """GET /api/v3/openOrderList: the lists with an open order."""
    assert who is not None
    who.require("read")
    await api.gw.instruments_ready()
    live = await api.open_states(who, None)
    parents = sorted({s["_id"].partition("/")[0] for s in live if "/" in s["_id"]})
    found = api.gw.orders.find({"order_id": {"$in": parents}, "account_id": who.account_id})
    docs = sorted([dict(d) async for d in found if list_kind(d)], key=lambda d: d["ts"])
    return await views_of(api, who, docs)


async def views_of(api: BinanceApi, who: Principal, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    states = await api.states_of(who, [oid for d in docs for oid in order_ids(d)])
    return [list_view(api, d, states)[0] for d in docs]


async def cancel_list(api: BinanceApi, request: web.Request, params: Params, who: Principal | None) -> Any:
    """DELETE /api/v3/orderList: our cancel of the list id (every open order of it), then, within the
    wait, each open order's end; the list with the orders' cancel answers."""
    assert who is not None
    await api.gw.instruments_ready()
    i = api.instrument(params)
    doc = await find_list(api, who, params, ("orderListId", "listClientOrderId"))
    if doc["symbol"] != i.symbol:
        raise BnError(-2011, "Unknown order sent.")
    _, views = list_view(api, doc, await api.states_of(who, order_ids(doc)))
    open_ = {v["clientOrderId"] for v in views if v["status"] in ("NEW", "PARTIALLY_FILLED")}
    if not open_ and not any(v["status"] == "PENDING_NEW" for v in views):
        raise BnError(-2011, "Unknown order sent.")
    request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
    with api.watch(who.account_id, *sorted(open_)) as reports:
        try:
            await api.gw.cancel(who, {"order_id": doc["order_id"]}, request_id)
        except ApiError as e:
            raise translated(e, cancel=True) from None
        seen = await api.outcome(reports, True, each(open_, set(), ended=True)) if open_ else []
    stored = await api.states_of(who, order_ids(doc))
    head, views = list_view(api, doc, {**stored, **latest(seen)})
    new_id = params.get("newClientOrderId")
    return {**head, "orderReports": [canceled_view(v, new_id) for v in views]}


LIST_ROUTES = (
    Route("POST", "/api/v3/orderList/oco", new_oco, 1, "SIGNED"),
    Route("POST", "/api/v3/order/oco", new_oco, 1, "SIGNED"),
    Route("POST", "/api/v3/orderList/otoco", new_otoco, 1, "SIGNED"),
    Route("POST", "/api/v3/orderList/oto", new_oto, 1, "SIGNED"),
    Route("GET", "/api/v3/orderList", get_list, 4, "SIGNED"),
    Route("DELETE", "/api/v3/orderList", cancel_list, 1, "SIGNED"),
    Route("GET", "/api/v3/allOrderList", all_lists, 20, "SIGNED"),
    Route("GET", "/api/v3/openOrderList", open_lists, 6, "SIGNED"),
)

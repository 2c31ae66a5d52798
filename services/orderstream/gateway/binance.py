"""The Binance Spot-compatible API: Binance's REST paths, parameters, signing and answers, so that tools
written for Binance (CCXT, python-binance, ...) trade on Orderstream unchanged.

Served at the gateway's root next to our own API (`/api/v3/...`; the streams in `binance_streams.py`:
`/ws/<stream>`, `/stream?streams=`), on the gateway's machinery: its keys and secrets, order path
(`Gateway.place_pending`, `cancel`, `replace`: the same validation, idempotency, rate-limit buckets
and backpressure), the collector's read model (orders, fills, balances), the instrument and depth
mirrors and the per-account report fan-out.

- Symbols are base and quote concatenated (`BTCUSD` for `BTC-USD`), both ways.
- Signed requests (Binance's SIGNED): `X-MBX-APIKEY`, and `timestamp`, `recvWindow` (default 5000, at
  most 60000) and `signature` = hex HMAC-SHA256(secret, totalParams) among the parameters, where
  totalParams is the query string followed by the body (`application/x-www-form-urlencoded`) without
  the signature, as sent (percent-encoded); the same text percent-decoded is accepted too (clients
  differ in what they encode). A signature is accepted once (`gateway_signatures`, as for our own API).
- orderId: Binance's ids are integers below 2^53 and grow with time. Ours is `<symbol>-<16 hex>`, with
  the creation time in the gateway's idempotency document (`gateway_orders.ts`), so orderId =
  creation ms << 11 | the id's first 6 bits << 5 | basket leg + 1 (0 for an order of its own): stable,
  derived, nothing more stored, and found again through the creation time.
- orderListId: an order list (our OCO or bracket, `binance_lists.py`) is numbered the same way from its
  own document, leg code 0; its orders `<list id>/<n>` get codes n + 1.
- Errors are `{"code": -1121, "msg": "Invalid symbol."}` with Binance's codes and HTTP statuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from orderstream.common import records as r
from orderstream.common.basket import list_orders
from orderstream.common.decimals import API_MAX
from orderstream.common.history import LIVE, balances
from orderstream.common.trading import TERMINAL
from orderstream.gateway import api
from orderstream.gateway.app import Gateway
from orderstream.gateway.auth import Principal
from orderstream.gateway.binance_market import INTERVALS_MS, MarketCache, bn, bn_symbol, ms, number
from orderstream.gateway.core import BASKET, INDEX, parse
from orderstream.gateway.errors import ApiError
from orderstream.gateway.rest import UNAVAILABLE

log = logging.getLogger(__name__)

MAX_RECV_WINDOW_MS = 60_000
DECIMAL = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
DECIMAL_RANGE = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
SETTLE_S = 0.15  # after a report of a resting order, how long more reports (its first fills) may come
ORDER_TYPES = [
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
]
TYPES_IN = {  # Binance order type -> ours (LIMIT_MAKER: a post-only LIMIT)
    "LIMIT": r.OrderType.LIMIT,
    "LIMIT_MAKER": r.OrderType.LIMIT,
    "MARKET": r.OrderType.MARKET,
    "STOP_LOSS": r.OrderType.STOP_MARKET,
    "STOP_LOSS_LIMIT": r.OrderType.STOP_LIMIT,
    "TAKE_PROFIT": r.OrderType.TAKE_PROFIT_MARKET,
    "TAKE_PROFIT_LIMIT": r.OrderType.TAKE_PROFIT_LIMIT,
}
TYPES_OUT = {v: k for k, v in TYPES_IN.items() if k != "LIMIT_MAKER"} | {
    r.OrderType.TRAILING_STOP: "STOP_LOSS"
}
STP_IN = {
    "EXPIRE_TAKER": r.SelfTradePrevention.CANCEL_NEWEST,
    "EXPIRE_MAKER": r.SelfTradePrevention.CANCEL_OLDEST,
    "EXPIRE_BOTH": r.SelfTradePrevention.CANCEL_BOTH,
    "NONE": r.SelfTradePrevention.NONE,
}
STP_OUT = {v: k for k, v in STP_IN.items()}
EXPIRING = {"IOC_REMAINDER", "FOK_UNFILLED", "MARKET_PROTECTION", "NO_LIQUIDITY", "QUOTE_BUDGET_EXHAUSTED"}
INSUFFICIENT = "Account has insufficient balance for requested action."
REJECT_MESSAGES = {
    "INSUFFICIENT_FUNDS": INSUFFICIENT,
    "POST_ONLY_WOULD_TAKE": "Order would immediately match and take.",
    "KILL_SWITCH": "Market is closed.",
    "SYMBOL_DISABLED": "Market is closed.",
    "TRADING_HALTED": "Market is closed.",
}
MAX_BINANCE_ID = 2**53 - 1


class BnError(Exception):
    """A refusal in Binance's shape."""

    def __init__(self, code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status, self.headers = code, msg, status, headers or {}


def mandatory(name: str) -> BnError:
    return BnError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal(name: str, legal: str = DECIMAL_RANGE) -> BnError:
    return BnError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


FILTERS = {40011: "PRICE_FILTER", 40012: "LOT_SIZE", 40013: "LOT_SIZE"}
FIELD_NAMES = {
    "quantity": "quantity",
    "price": "price",
    "stop_price": "stopPrice",
    "quote_budget": "quoteOrderQty",
    "display_quantity": "icebergQty",
    "client_order_id": "newClientOrderId",
    "side": "side",
    "order_type": "type",
    "time_in_force": "timeInForce",
    "order_id": "orderId",
}


RELATION = "The relationship of the prices for the orders is not correct."


def translated(e: ApiError, *, cancel: bool = False, names: dict[str, str] | None = None) -> BnError:
    """A gateway refusal as Binance answers the same situation; `names`: our fields' Binance parameter
    names where they differ from FIELD_NAMES' (an order list's)."""
    if e.code in FILTERS:
        return BnError(-1013, f"Filter failure: {FILTERS[e.code]}")
    if e.code == 40010:
        return BnError(-1121, "Invalid symbol.")
    if e.code == 40001:
        known = FIELD_NAMES | (names or {})
        field, issue = str(e.details.get("field")), str(e.details.get("issue"))
        name = known.get(field, field)
        if issue.startswith("not above "):  # two prices of a list out of order
            low = issue.removeprefix("not above ")
            return BnError(-2010, f"{RELATION} ('{name}' must be above '{known.get(low, low)}')")
        return mandatory(name) if "required" in issue.lower() else illegal(name)
    if e.code == 40014:  # an order list on a symbol of an external venue
        return BnError(-1020, f"This operation is not supported. ({e.message})")
    if e.code in (40100, 40101, 40301):
        return BnError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    if e.code in (40102, 40104):
        return BnError(-1022, "Signature for this request is not valid.")
    if e.code == 40103:
        return BnError(-1021, "Timestamp for this request is outside of the recvWindow.")
    if e.code == 40401:
        return BnError(-2011, "Unknown order sent.") if cancel else BnError(-2013, "Order does not exist.")
    if e.code == 42901:
        return BnError(-1015, "Too many new orders; please slow down.", 429, e.headers)
    if e.code == 50302:
        return BnError(
            -1008,
            "Server is currently overloaded with other requests. Please try again in a few minutes.",
            503,
            e.headers,
        )
    if e.code == 50001:
        return BnError(
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; "
            "execution status unknown.",
            503,
        )
    if e.code == 40904:
        return BnError(-1020, "This operation is not supported.")
    return BnError(
        -1000,
        f"An unknown error occurred while processing the request. ({e.message})",
        e.status if e.status < 500 else 500,
    )


# -- parameters ---------------------------------------------------------------------------------


class Params:
    """A request's parameters (query and form body together); Binance's refusals for bad ones."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.values: dict[str, str] = {}
        for k, v in pairs:
            if k in self.values:
                raise BnError(-1101, f"Duplicate values for parameter '{k}'.")
            self.values[k] = v

    def get(self, name: str) -> str | None:
        value = self.values.get(name)
        return value if value not in (None, "") else None

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise mandatory(name)
        return value

    def decimal(self, name: str, required: bool = False) -> Decimal | None:
        value = self.need(name) if required else self.get(name)
        if value is None:
            return None
        if not DECIMAL.fullmatch(value):
            raise illegal(name)
        return Decimal(value)

    def integer(
        self, name: str, default: int | None = None, low: int = 0, high: int = 2**63 - 1
    ) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        if not (value.isascii() and value.lstrip("-").isdigit()):
            raise illegal(name, "^-?[0-9]{1,19}$")
        n = int(value)
        if not low <= n <= high:
            raise BnError(
                -1100, f"Illegal characters found in parameter '{name}'; legal range is '{low}..{high}'."
            )
        return n

    def choice(self, name: str, allowed: dict[str, int], default: str | None = None) -> str | None:
        """One of `allowed` (each with its Binance error code for anything else)."""
        value = self.get(name) or default
        if value is None:
            return None
        if value not in allowed or allowed[value] is None:
            code = CHOICE_ERRORS.get(name, -1100)
            raise BnError(code, CHOICE_MESSAGES.get(code, f"Invalid {name}."))
        return value


CHOICE_ERRORS = {
    "side": -1117,
    "type": -1116,
    "timeInForce": -1115,
    "newOrderRespType": -1100,
    "interval": -1120,
    "selfTradePreventionMode": -1100,
    "cancelReplaceMode": -1100,
    "aboveType": -1116,
    "belowType": -1116,
    "workingType": -1116,
    "pendingAboveType": -1116,
    "pendingBelowType": -1116,
    "workingSide": -1117,
    "pendingSide": -1117,
    "aboveTimeInForce": -1115,
    "belowTimeInForce": -1115,
    "stopLimitTimeInForce": -1115,
    "workingTimeInForce": -1115,
    "pendingAboveTimeInForce": -1115,
    "pendingBelowTimeInForce": -1115,
}
CHOICE_MESSAGES = {
    -1117: "Invalid side.",
    -1116: "Invalid orderType.",
    -1115: "Invalid timeInForce.",
    -1120: "Invalid interval.",
}


def form_pairs(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True)


def total_params(query: str, body: str) -> tuple[str, str | None]:
    """Binance's totalParams (the query string, then the body) without the signature parameter, and the
    signature."""
    signature = None
    parts = []
    for text in (query, body):
        kept = []
        for item in text.split("&") if text else []:
            if item.startswith("signature="):
                signature = item[len("signature=") :]
            else:
                kept.append(item)
        parts.append("&".join(kept))
    return "".join(parts), signature


def hmac_hex(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# -- orderId -------------------------------------------------------------------------------------


def order_number(doc: dict[str, Any], order_id: str | None = None) -> int:
    """Binance's orderId of an order (see the module's docstring) from its idempotency document."""
    order_id = order_id or doc["order_id"]
    head, _, leg = order_id.partition("/")
    tail = head.rsplit("-", 1)[-1]
    bits = int(tail[:2], 16) >> 2 if len(tail) >= 2 and all(c in "0123456789abcdef" for c in tail[:2]) else 0
    code = int(leg) + 1 if leg.isdigit() and int(leg) < 31 else 0
    return (int(doc["ts"] * 1000) << 11) | (bits << 5) | code


def list_kind(doc: dict[str, Any]) -> str | None:
    """OCO or BRACKET for the document of an order list (our own legs on one real symbol: two for an
    OCO, three for a bracket), None for any other order (a basket's and an index order's symbol is
    theirs, a TWAP/VWAP parent has no legs)."""
    legs = doc.get("legs")
    if not legs or doc.get("symbol") in (BASKET, INDEX) or doc.get("algo"):
        return None
    return {2: "OCO", 3: "BRACKET"}.get(len(legs))


def list_number(doc: dict[str, Any] | None, order_id: str) -> int:
    """Binance's orderListId of an order (-1 when it is of no list): its list's own orderId."""
    if doc is None or "/" not in order_id or list_kind(doc) is None:
        return -1
    return order_number(doc, doc["order_id"])


@dataclass
class Order:
    """An order as the API shows it: its idempotency document, its command, its latest stored state."""

    doc: dict[str, Any]
    order_id: str
    command: r.SubmitOrder | None
    state: dict[str, Any] | None


# -- the API --------------------------------------------------------------------------------------


Handler = Callable[["BinanceApi", web.Request, Params, Principal | None], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    weight: int = 1
    security: str = "NONE"  # NONE, API_KEY (X-MBX-APIKEY only) or SIGNED


class BinanceApi:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.market = MarketCache(gw.settings, gw.codec)
        self.weights: dict[tuple[str, int], int] = {}
        self.watchers: dict[str, dict[str, set[asyncio.Queue[r.ExecutionReport]]]] = {}
        self.placed: OrderedDict[str, r.SubmitOrder] = OrderedDict()  # commands of recent orders, by id
        self.tasks: list[asyncio.Task[None]] = []
        from orderstream.gateway.binance_streams import Streams  # the streams build on this module

        self.streams = Streams(self)

    async def start(self, _: web.Application) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self.market.run()),
            loop.create_task(self.market.tickers.follow()),
            loop.create_task(self.streams.halts.follow()),
        ]

    async def stop(self, _: web.Application) -> None:
        for task in self.tasks:
            task.cancel()

    # -- symbols ---------------------------------------------------------------------------------

    def listed(self) -> dict[str, r.Instrument]:
        """Every instrument by its Binance symbol."""
        return {bn_symbol(i): i for i in self.gw.instruments.latest.values()}

    def instrument(self, params: Params, name: str = "symbol") -> r.Instrument:
        symbol = params.need(name)
        found = self.listed().get(symbol)
        if found is None:
            raise BnError(-1121, "Invalid symbol.")
        return found

    def status(self, instrument: r.Instrument) -> str:
        """TRADING; HALT when the instrument is disabled; BREAK under a SYMBOL kill switch."""
        if not instrument.enabled:
            return "HALT"
        switch = self.streams.halts.get(f"SYMBOL:{instrument.symbol}")
        return "BREAK" if switch is not None and switch.engaged else "TRADING"

    # -- serving ---------------------------------------------------------------------------------

    def handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            used = 0
            try:
                used = self.weigh(request, route.weight)
                body = (await request.read()).decode(errors="replace") if request.can_read_body else ""
                params = Params(form_pairs(request.query_string) + form_pairs(body))
                who = None
                if route.security == "SIGNED":
                    who = await self.verify(request, params, request.query_string, body)
                elif route.security == "API_KEY":
                    who = await self.api_key(request)
                result = await route.handler(self, request, params, who)
                return web.json_response(result, headers={"X-MBX-USED-WEIGHT-1M": str(used)})
            except BnError as e:
                error = e
            except ApiError as e:
                error = translated(e)
            except UNAVAILABLE as exc:
                log.warning("binance request failed", extra={"path": request.path, "error": repr(exc)})
                error = BnError(
                    -1007,
                    "Timeout waiting for response from backend server. Send status "
                    "unknown; execution status unknown.",
                    503,
                )
            except Exception:
                log.exception("binance request failed", extra={"path": request.path})
                error = BnError(-1000, "An unknown error occurred while processing the request.", 500)
            headers = {"X-MBX-USED-WEIGHT-1M": str(used), **error.headers}
            return web.json_response(
                {"code": error.code, "msg": error.msg}, status=error.status, headers=headers
            )

        return handle

    def weigh(self, request: web.Request, weight: int) -> int:
        """Count the request's weight for its client address this minute; -1003 (429) over the limit."""
        minute = int(time.time() // 60)
        key = (request.remote or "", minute)
        used = self.weights.get(key, 0) + weight
        if len(self.weights) > 10_000 or (self.weights and next(iter(self.weights))[1] < minute):
            self.weights = {k: v for k, v in self.weights.items() if k[1] == minute}
        self.weights[key] = used
        limit = self.gw.settings.binance_weight_per_min
        if used > limit:
            retry = str(max(1, 60 - int(time.time()) % 60))
            raise BnError(
                -1003,
                f"Too much request weight used; current limit is {limit} request weight per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
                429,
                {"Retry-After": retry},
            )
        return used

    async def api_key(self, request: web.Request) -> Principal:
        key = request.headers.get("X-MBX-APIKEY")
        if not key:
            raise BnError(-2014, "API-key format invalid.", 401)
        found = await self.gw.keys.lookup(key) if key.isascii() and len(key) <= 128 else None
        if found is None:
            raise BnError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        return Principal(key, found[0], found[1])

    async def verify(self, request: web.Request, params: Params, query: str, body: str) -> Principal:
        """Binance's SIGNED check: key, timestamp within recvWindow, HMAC of totalParams, once."""
        who = await self.api_key(request)
        stamp = params.integer("timestamp")
        if stamp is None:
            raise mandatory("timestamp")
        window = params.integer("recvWindow", 5000, 0, 2**31)
        assert window is not None
        if window > MAX_RECV_WINDOW_MS:
            raise BnError(-1131, "recvWindow must be less than 60000")
        now = time.time() * 1000
        if not (stamp < now + 1000 and now - stamp <= window):
            raise BnError(-1021, "Timestamp for this request is outside of the recvWindow.")
        message, signature = total_params(query, body)
        if not signature:
            raise mandatory("signature")
        _, _, secret = await self.gw.verifier.known(who.key_id)
        good = {hmac_hex(secret, message), hmac_hex(secret, unquote_plus(message))}
        if not any(hmac.compare_digest(g, unquote_plus(signature).lower()) for g in good):
            raise BnError(-1022, "Signature for this request is not valid.")
        if not await self.gw.verifier.replays.first_use(f"bn:{signature}", stamp + window):
            raise BnError(-1022, "Signature for this request is not valid (already used).")
        return who

    # -- public REST -----------------------------------------------------------------------------

    async def ping(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        return {}

    async def time(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        return {"serverTime": int(time.time() * 1000)}

    async def exchange_info(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        await self.gw.instruments_ready()
        wanted = params.get("symbol")
        listed = self.listed()
        if params.get("symbols"):
            names = [s.strip('"[] ') for s in params.need("symbols").split(",")]
        else:
            names = [wanted] if wanted else sorted(listed)
        if any(n not in listed for n in names):
            raise BnError(-1121, "Invalid symbol.")
        return {
            "timezone": "UTC",
            "serverTime": int(time.time() * 1000),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": self.gw.settings.binance_weight_per_min,
                },
                {
                    "rateLimitType": "ORDERS",
                    "interval": "SECOND",
                    "intervalNum": 1,
                    "limit": int(self.gw.settings.orders_per_s),
                },
            ],
            "exchangeFilters": [],
            "symbols": [self.symbol_info(n, listed[n]) for n in names],
        }

    def symbol_info(self, name: str, i: r.Instrument) -> dict[str, Any]:
        return {
            "symbol": name,
            "status": self.status(i),
            "baseAsset": i.base_asset,
            "baseAssetPrecision": 8,
            "quoteAsset": i.quote_asset,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ORDER_TYPES,
            "icebergAllowed": True,
            "ocoAllowed": i.venue == "INTERNAL",  # lists trade on the internal venue only
            "otoAllowed": i.venue == "INTERNAL",  # OTOCO; an OTO itself is refused (binance_lists.py)
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": bn(i.tick_size),
                    "maxPrice": bn(API_MAX),
                    "tickSize": bn(i.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": bn(i.min_quantity),
                    "maxQty": bn(API_MAX),
                    "stepSize": bn(i.lot_size),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": bn(i.min_quantity),
                    "maxQty": bn(API_MAX),
                    "stepSize": bn(i.lot_size),
                },
                {"filterType": "ICEBERG_PARTS", "limit": 1000},
                {
                    "filterType": "NOTIONAL",
                    "minNotional": bn(i.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": bn(API_MAX),
                    "applyMaxToMarket": False,
                    "avgPriceMins": 0,
                },
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "EXPIRE_TAKER",
            "allowedSelfTradePreventionModes": sorted(STP_IN),
        }

    async def depth(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        await self.gw.instruments_ready()
        i = self.instrument(params)
        limit = params.integer("limit", 100, 1, 5000)
        assert limit is not None
        book = self.streams.book(i.symbol)
        view = book.view(i.symbol, limit)
        return {
            "lastUpdateId": max(book.sequence, 0),
            "bids": [[bn(p), bn(q)] for p, q in view["bids"]],
            "asks": [[bn(p), bn(q)] for p, q in view["asks"]],
        }

    async def trades(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        await self.gw.instruments_ready()
        i = self.instrument(params)
        limit = params.integer("limit", 500, 1, 1000)
        assert limit is not None
        return [
            {
                "id": number(t.trade_id),
                "price": bn(t.price),
                "qty": bn(t.quantity),
                "quoteQty": bn(t.price * t.quantity),
                "time": ms(t.ts_event),
                "isBuyerMaker": t.aggressor_side == r.Side.SELL,
                "isBestMatch": True,
            }
            for t in self.market.recent_trades(i.symbol, limit)
        ]

    async def agg_trades(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        """Each trade is an aggregate of its own (our trades are not merged)."""
        await self.gw.instruments_ready()
        i = self.instrument(params)
        limit = params.integer("limit", 500, 1, 1000)
        start, end, from_id = params.integer("startTime"), params.integer("endTime"), params.integer("fromId")
        assert limit is not None
        chosen = [
            t
            for t in self.market.of(i.symbol).trades
            if (start is None or ms(t.ts_event) >= start)
            and (end is None or ms(t.ts_event) <= end)
            and (from_id is None or number(t.trade_id) >= from_id)
        ]
        chosen = chosen[:limit] if start is not None or from_id is not None else chosen[-limit:]
        return [
            {
                "a": number(t.trade_id),
                "p": bn(t.price),
                "q": bn(t.quantity),
                "f": number(t.trade_id),
                "l": number(t.trade_id),
                "T": ms(t.ts_event),
                "m": t.aggressor_side == r.Side.SELL,
                "M": True,
            }
            for t in chosen
        ]

    async def klines(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        await self.gw.instruments_ready()
        i = self.instrument(params)
        interval = params.choice("interval", dict.fromkeys(INTERVALS_MS, 0))
        if interval is None:
            raise mandatory("interval")
        limit = params.integer("limit", 500, 1, 1000)
        assert limit is not None
        return self.market.klines(
            i.symbol, interval, params.integer("startTime"), params.integer("endTime"), limit
        )

    def chosen(self, params: Params) -> tuple[list[tuple[str, r.Instrument]], bool]:
        """The instruments a ticker request names (`symbol`, or `symbols` as a JSON list); all otherwise.
        True when one symbol was named (the answer is an object, not a list)."""
        listed = self.listed()
        if params.get("symbol"):
            i = self.instrument(params)
            return [(bn_symbol(i), i)], True
        if params.get("symbols"):
            names = [s.strip('"[] ') for s in params.need("symbols").split(",")]
            if any(n not in listed for n in names):
                raise BnError(-1121, "Invalid symbol.")
            return [(n, listed[n]) for n in names], False
        return sorted(listed.items()), False

    async def ticker_24hr(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        await self.gw.instruments_ready()
        chosen, one = self.chosen(params)
        rows = [self.ticker(name, i) for name, i in chosen]
        return rows[0] if one else rows

    def ticker(self, name: str, i: r.Instrument) -> dict[str, Any]:
        """Binance's 24hr ticker from md.ticker: the figures of the UTC day so far (not a rolling 24 h)."""
        t = self.market.tickers.get(i.symbol)
        now = int(time.time() * 1000)
        day = now // 86_400_000 * 86_400_000
        bid, ask = self.streams.best(i.symbol)
        if t is None or ms(t.ts_event) < day:
            last = t.last_price if t is not None else Decimal(0)
            zero = bn(0)
            return {
                "symbol": name,
                "priceChange": zero,
                "priceChangePercent": "0.000",
                "weightedAvgPrice": zero,
                "prevClosePrice": bn(last),
                "lastPrice": bn(last),
                "lastQty": zero,
                "bidPrice": bn(bid[0]),
                "bidQty": bn(bid[1]),
                "askPrice": bn(ask[0]),
                "askQty": bn(ask[1]),
                "openPrice": bn(last),
                "highPrice": bn(last),
                "lowPrice": bn(last),
                "volume": zero,
                "quoteVolume": zero,
                "openTime": day,
                "closeTime": now,
                "firstId": -1,
                "lastId": -1,
                "count": 0,
            }
        quote = self.market.quote_volume_since(i.symbol, day)
        change = t.last_price - t.open
        percent = (change * 100 / t.open).quantize(Decimal("0.001")) if t.open else Decimal("0.000")
        return {
            "symbol": name,
            "priceChange": bn(change),
            "priceChangePercent": format(percent, "f"),
            "weightedAvgPrice": bn((quote / t.volume).quantize(Decimal("1e-8")))
            if t.volume and quote
            else bn(t.last_price),
            "prevClosePrice": bn(t.open),
            "lastPrice": bn(t.last_price),
            "lastQty": bn(t.last_quantity),
            "bidPrice": bn(bid[0]),
            "bidQty": bn(bid[1]),
            "askPrice": bn(ask[0]),
            "askQty": bn(ask[1]),
            "openPrice": bn(t.open),
            "highPrice": bn(t.high),
            "lowPrice": bn(t.low),
            "volume": bn(t.volume),
            "quoteVolume": bn(quote),
            "openTime": day,
            "closeTime": ms(t.ts_event),
            "firstId": -1,
            "lastId": number(f"x-{t.sequence}"),
            "count": t.trades,
        }

    async def ticker_price(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        await self.gw.instruments_ready()
        chosen, one = self.chosen(params)
        rows = []
        for name, i in chosen:
            t = self.market.tickers.get(i.symbol)
            rows.append({"symbol": name, "price": bn(t.last_price if t else 0)})
        return rows[0] if one else rows

    async def book_ticker(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        await self.gw.instruments_ready()
        chosen, one = self.chosen(params)
        rows = []
        for name, i in chosen:
            bid, ask = self.streams.best(i.symbol)
            rows.append(
                {
                    "symbol": name,
                    "bidPrice": bn(bid[0]),
                    "bidQty": bn(bid[1]),
                    "askPrice": bn(ask[0]),
                    "askQty": bn(ask[1]),
                }
            )
        return rows[0] if one else rows

    # -- orders ----------------------------------------------------------------------------------

    def order_fields(self, params: Params, i: r.Instrument, prefix: str = "") -> tuple[dict[str, Any], str]:
        """Our order fields from Binance's parameters (`prefix`: none, or cancelReplace's), and Binance's
        type; Binance's refusals for what it refuses."""
        side = params.choice("side", {"BUY": 0, "SELL": 0})
        kind = params.choice("type", dict.fromkeys(TYPES_IN, 0))
        if side is None:
            raise mandatory("side")
        if kind is None:
            raise mandatory("type")
        tif = params.choice("timeInForce", {"GTC": 0, "IOC": 0, "FOK": 0})
        quantity, quote = params.decimal("quantity"), params.decimal("quoteOrderQty")
        price, stop = params.decimal("price"), params.decimal("stopPrice")
        iceberg = params.decimal("icebergQty")
        if params.get("trailingDelta"):
            raise BnError(-1014, "Unsupported order combination.")
        limit_type = kind in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT", "LIMIT_MAKER")
        if limit_type and price is None:
            raise mandatory("price")
        if kind in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") and tif is None:
            raise mandatory("timeInForce")
        if kind in ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT") and stop is None:
            raise mandatory("stopPrice")
        if not limit_type and price is not None:
            raise BnError(-1106, "Parameter 'price' sent when not required.")
        if iceberg is not None and (not limit_type or tif not in (None, "GTC")):
            raise BnError(-2010, "Order would be an iceberg that is not GTC LIMIT.")
        stp = params.choice("selfTradePreventionMode", dict.fromkeys(STP_IN, 0), "EXPIRE_TAKER")
        fields: dict[str, Any] = {
            "symbol": i.symbol,
            "side": side,
            "order_type": TYPES_IN[kind].value,
            "time_in_force": tif or "GTC",
            "post_only": kind == "LIMIT_MAKER",
            "self_trade_prevention": STP_IN[stp or "EXPIRE_TAKER"].value,
        }
        for name, value in (("price", price), ("stop_price", stop), ("display_quantity", iceberg)):
            if value is not None:
                fields[name] = str(value)
        if kind == "MARKET":
            quantity = self.market_quantity(i, side, quantity, quote, fields)
        elif quote is not None:
            raise BnError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        if quantity is None:
            raise mandatory("quantity")
        fields["quantity"] = str(quantity)
        self.check_filters(i, quantity, price, stop, iceberg, kind)
        cid = params.get("newClientOrderId")
        fields["client_order_id"] = cid or f"os-{uuid.uuid4().hex[:22]}"  # Binance makes one when absent
        return fields, kind

    def market_quantity(
        self,
        i: r.Instrument,
        side: str,
        quantity: Decimal | None,
        quote: Decimal | None,
        fields: dict[str, Any],
    ) -> Decimal | None:
        """A MARKET order's quantity, and for a buy its quote budget (our market buys spend at most one):
        `quoteOrderQty` is the budget itself (quantity: what it buys at the best ask, so the budget
        binds); a buy by `quantity` gets a budget of what that quantity costs against the book's asks,
        plus 5 % for the book moving. A sell by `quoteOrderQty` sells what the bids pay that much for."""
        if (quantity is None) == (quote is None):
            raise BnError(
                -1102,
                "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                if quantity is None
                else "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.",
            )
        bid, ask = self.streams.levels(i.symbol)
        if quote is not None:  # what the book's other side gives for that much quote asset
            if side == "BUY":
                fields["quote_budget"] = str(quote)
            return affordable(bid if side == "SELL" else ask, quote, i.lot_size)
        assert quantity is not None
        if side == "BUY":
            cost, left = Decimal(0), quantity
            for price, size in ask:
                take = min(size, left)
                cost, left = cost + take * price, left - take
                if not left:
                    break
            if left or not ask:
                raise BnError(-2010, "No liquidity: the book's asks do not cover the quantity.")
            grid = i.tick_size * i.lot_size  # the matcher counts a budget in ticks x lots
            fields["quote_budget"] = format(((cost * Decimal("1.05") // grid + 1) * grid).normalize(), "f")
        return quantity

    @staticmethod
    def check_filters(
        i: r.Instrument,
        quantity: Decimal,
        price: Decimal | None,
        stop: Decimal | None,
        iceberg: Decimal | None,
        kind: str,
    ) -> None:
        """Binance's filter failures (-1013) for what our instrument rules refuse."""
        for value in (price, stop):
            if value is not None and (value % i.tick_size or value < i.tick_size):
                raise BnError(-1013, "Filter failure: PRICE_FILTER")
        for value in (quantity, iceberg):
            if value is not None and (value % i.lot_size or value < i.min_quantity):
                raise BnError(-1013, "Filter failure: LOT_SIZE")
        if iceberg is not None and iceberg > quantity:
            raise BnError(-1013, "Filter failure: ICEBERG_PARTS")
        reference = price if price is not None else stop
        if reference is not None and reference * quantity < i.min_notional:
            raise BnError(-1013, "Filter failure: NOTIONAL")

    async def new_order(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        return await self.place(who, params, request.headers.get("X-Request-Id") or uuid.uuid4().hex)

    async def place(self, who: Principal, params: Params, request_id: str) -> dict[str, Any]:
        """Place through the gateway's order path, then wait (bounded) for the order's reports: a
        rejection is answered -2010 as Binance does; RESULT and FULL show its state and fills."""
        await self.gw.instruments_ready()
        i = self.instrument(params)
        fields, kind = self.order_fields(params, i)
        resp = params.choice(
            "newOrderRespType",
            {"ACK": 0, "RESULT": 0, "FULL": 0},
            "FULL" if kind in ("MARKET", "LIMIT") else "ACK",
        )
        if self.status(i) != "TRADING":
            raise BnError(-1013, "Market is closed.")
        with self.watch(who.account_id, fields["client_order_id"]) as reports:
            try:
                pending = await self.gw.place_pending(who, fields, request_id)
                placed = await pending
            except ApiError as e:
                raise translated(e) from None
            except Exception as exc:
                raise translated(self.gw_failure(exc)) from None
            doc = await self.doc_by_client_id(who, placed["client_order_id"])
            command = self.command_of(doc, placed["order_id"])
            if command is not None:
                self.remember(command)
            quick = kind == "MARKET" or fields["time_in_force"] in ("IOC", "FOK")
            seen = [] if placed["duplicate"] else await self.outcome(reports, quick)
        rejected = next((rep for rep in seen if rep.status == r.OrderStatus.REJECTED), None)
        if rejected is not None:
            reason = rejected.reason or "REJECTED"
            raise BnError(-2010, REJECT_MESSAGES.get(reason, f"Order rejected: {reason}."))
        state = await self.state_of(placed["order_id"], who) if placed["duplicate"] else None
        order = Order(doc, placed["order_id"], command, state or (report_state(seen[-1]) if seen else None))
        view = self.order_view(order)
        if resp == "ACK":
            head = {k: view[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId")}
            return {**head, "transactTime": view["time"]}
        result = result_view(view)
        if resp == "FULL":
            result["fills"] = fills(seen)
        return result

    @staticmethod
    def gw_failure(exc: Exception) -> ApiError:
        if isinstance(exc, UNAVAILABLE):
            return ApiError(50001, "not confirmed", status=503)
        raise exc

    async def test_order(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        """Validated as a new order is, placed nowhere."""
        assert who is not None
        who.require("trade")
        await self.gw.instruments_ready()
        i = self.instrument(params)
        fields, _ = self.order_fields(params, i)
        try:
            api.check_instrument(parse(api.PlaceOrder, fields), i)
        except ApiError as e:
            raise translated(e) from None
        if params.get("computeCommissionRates") == "true":
            return {
                "standardCommissionForOrder": {"maker": bn(i.maker_fee), "taker": bn(i.taker_fee)},
                "taxCommissionForOrder": {"maker": bn(0), "taker": bn(0)},
                "discount": {
                    "enabledForAccount": False,
                    "enabledForSymbol": False,
                    "discountAsset": None,
                    "discount": bn(0),
                },
            }
        return {}

    @contextmanager
    def watch(self, account: str, *client_order_ids: str) -> Iterator[asyncio.Queue[r.ExecutionReport]]:
        """The execution reports of the account's orders `client_order_ids` from now on, in one queue
        (the gateway's per-account report fan-out)."""
        queue: asyncio.Queue[r.ExecutionReport] = asyncio.Queue()
        mine = self.watchers.setdefault(account, {})
        for client_order_id in client_order_ids:
            mine.setdefault(client_order_id, set()).add(queue)
        self.gw.report_sinks.setdefault(account, set()).add(self.heard)
        try:
            yield queue
        finally:
            for client_order_id in client_order_ids:
                queues = mine.get(client_order_id, set())
                queues.discard(queue)
                if not queues:
                    mine.pop(client_order_id, None)
            if not mine:
                self.watchers.pop(account, None)
                sinks = self.gw.report_sinks.get(account, set())
                sinks.discard(self.heard)
                if not sinks:
                    self.gw.report_sinks.pop(account, None)

    async def heard(self, report: r.ExecutionReport) -> None:
        for queue in self.watchers.get(report.account_id, {}).get(report.client_order_id, ()):
            queue.put_nowait(report)

    async def outcome(
        self,
        reports: asyncio.Queue[r.ExecutionReport],
        quick: bool,
        done: Callable[[r.ExecutionReport], bool] | None = None,
    ) -> list[r.ExecutionReport]:
        """The reports that come within the wait: until a terminal one (`done`), or, for an order that
        may rest, until none more came for a moment after the first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.gw.settings.binance_result_wait_s
        finished = done or (lambda rep: rep.status in TERMINAL)
        seen: list[r.ExecutionReport] = []
        while True:
            left = deadline - loop.time()
            if seen and not quick and done is None:
                left = min(left, SETTLE_S)
            if left <= 0:
                return seen
            try:
                report = await asyncio.wait_for(reports.get(), left)
            except TimeoutError:
                return seen
            seen.append(report)
            if finished(report) or report.status == r.OrderStatus.REJECTED:
                return seen

    def remember(self, command: r.SubmitOrder) -> None:
        self.placed[command.order_id] = command
        while len(self.placed) > 10_000:
            self.placed.popitem(last=False)

    # -- finding orders --------------------------------------------------------------------------

    async def doc_by_client_id(self, who: Principal, client_order_id: str) -> dict[str, Any]:
        doc = await self.gw.orders.find_one({"_id": f"{who.account_id}|{client_order_id}"})
        if doc is None:
            raise BnError(-2013, "Order does not exist.")
        return dict(doc)

    async def find(
        self,
        who: Principal,
        params: Params,
        i: r.Instrument,
        *,
        cancel: bool = False,
        names: tuple[str, str] = ("orderId", "origClientOrderId"),
    ) -> Order:
        """The order a request names by orderId or (original) client order id, of this symbol."""
        missing = BnError(-2011, "Unknown order sent.") if cancel else BnError(-2013, "Order does not exist.")
        number_ = params.integer(names[0], None, 0, MAX_BINANCE_ID)
        client_id = params.get(names[1])
        if number_ is None and client_id is None:
            raise BnError(
                -1102, f"Param '{names[1]}' or '{names[0]}' must be sent, but both were empty/null!"
            )
        order_id = None
        doc: dict[str, Any] | None = None
        if number_ is not None:
            for d in await self.docs_near(who, number_):
                legs = d.get("legs") or []
                ids = [*(f"{d['order_id']}/{k}" for k in range(len(legs)))]
                if list_kind(d) is None:  # a list's own number is its orderListId, not an order's
                    ids.insert(0, d["order_id"])
                for oid in ids:
                    if order_number(d, oid) == number_:
                        doc, order_id = d, oid
        else:
            assert client_id is not None
            doc, order_id = await self.by_client_id(who, client_id)
        if doc is None or order_id is None or ("/" not in order_id and list_kind(doc)):
            raise missing  # a list's own client id names the list (GET /api/v3/orderList), not an order
        symbol = doc["legs"][int(order_id.rsplit("/", 1)[1])] if "/" in order_id else doc["symbol"]
        if symbol != i.symbol:
            raise missing
        return await self.order_of(doc, order_id, who)

    async def docs_near(self, who: Principal, number_: int) -> list[dict[str, Any]]:
        """The account's idempotency documents made when the Binance id `number_` says (its time)."""
        at = (number_ >> 11) / 1000
        window = {"$gte": at - 0.002, "$lte": at + 0.002}
        found = self.gw.orders.find({"account_id": who.account_id, "ts": window})
        return [dict(d) async for d in found]

    async def by_client_id(self, who: Principal, client_id: str) -> tuple[dict[str, Any] | None, str | None]:
        """The document and order id of the account's order `client_id`; an order of a list or basket
        by its own client id, `<list's client id>/<n>`."""
        found = await self.gw.orders.find_one({"_id": f"{who.account_id}|{client_id}"})
        if found is not None:
            return dict(found), found["order_id"]
        head, _, leg = client_id.rpartition("/")
        if head and leg.isdigit():
            parent = await self.gw.orders.find_one({"_id": f"{who.account_id}|{head}"})
            if parent is not None and int(leg) < len(parent.get("legs") or []):
                return dict(parent), f"{parent['order_id']}/{int(leg)}"
        return None, None

    async def order_of(self, doc: dict[str, Any], order_id: str, who: Principal) -> Order:
        return Order(doc, order_id, self.command_of(doc, order_id), await self.state_of(order_id, who))

    async def state_of(self, order_id: str, who: Principal) -> dict[str, Any] | None:
        found = await self.gw.db["trader_orders"].find_one({"_id": order_id, "account_id": who.account_id})
        return dict(found) if found else None

    def command_of(self, doc: dict[str, Any], order_id: str) -> r.SubmitOrder | None:
        known = self.placed.get(order_id)
        if known is not None:
            return known
        raw = doc.get("command")
        if raw is None:
            return None
        try:
            command = self.gw.codec.decode(raw)
        except Exception:  # a document of another version: shown from its state
            return None
        if isinstance(command, r.SubmitOrderList):  # an order of a list: as the matcher places it
            return next((o for o in list_orders(command) if o.order_id == order_id), None)
        return command if isinstance(command, r.SubmitOrder) and "/" not in order_id else None

    async def orders_of(self, who: Principal, states: list[dict[str, Any]]) -> list[Order]:
        """Orders (with their idempotency documents) for stored states, in the states' order."""
        parents = {s["_id"].partition("/")[0] for s in states}
        docs = {
            d["order_id"]: dict(d)
            async for d in self.gw.orders.find(
                {"order_id": {"$in": sorted(parents)}, "account_id": who.account_id}
            )
        }
        orders = []
        for s in states:
            doc = docs.get(s["_id"].partition("/")[0])
            if doc is not None:
                orders.append(Order(doc, s["_id"], self.command_of(doc, s["_id"]), s))
        return orders

    # -- order answers ---------------------------------------------------------------------------

    def order_view(self, o: Order) -> dict[str, Any]:
        """Binance's order object (GET /api/v3/order)."""
        c, s = o.command, o.state or {}
        created = int(o.doc["ts"] * 1000)
        order_type = r.OrderType(s.get("order_type") or (c.order_type if c else "LIMIT"))
        kind = "LIMIT_MAKER" if c is not None and c.post_only else TYPES_OUT[order_type]
        quantity = Decimal(s.get("quantity") or (c.quantity if c else 0))
        filled = Decimal(s.get("filled_quantity") or 0)
        average = Decimal(s.get("average_price") or 0)
        status = binance_status(s.get("status"), filled, s.get("reason"))
        if not s and list_kind(o.doc) == "BRACKET" and not o.order_id.endswith("/0"):
            status = "PENDING_NEW"  # an exit the entry's fills have not placed (yet)
        stop_type = order_type not in (r.OrderType.LIMIT, r.OrderType.MARKET)
        working = status != "PENDING_NEW" and (
            not stop_type or s.get("status") in ("TRIGGERED", "PARTIALLY_FILLED", "FILLED") or filled > 0
        )
        symbol = o.doc["legs"][int(o.order_id.rsplit("/", 1)[1])] if "/" in o.order_id else o.doc["symbol"]
        instrument = self.gw.instruments.get(symbol)
        return {
            "symbol": bn_symbol(instrument) if instrument else symbol.replace("-", ""),
            "orderId": order_number(o.doc, o.order_id),
            "orderListId": list_number(o.doc, o.order_id),
            "clientOrderId": s.get("client_order_id") or client_id_of(o.doc, o.order_id),
            "price": bn(s.get("price") or (c.price if c else None)),
            "origQty": bn(quantity),
            "executedQty": bn(filled),
            "cummulativeQuoteQty": bn(filled * average),
            "status": status,
            "timeInForce": (c.time_in_force.value if c else "GTC"),
            "type": kind,
            "side": s.get("side") or (c.side.value if c else "BUY"),
            "stopPrice": bn(c.stop_price if c else None),
            "icebergQty": bn(c.display_quantity if c else None),
            "time": created,
            "updateTime": ms(s["ts_ns"]) if s.get("ts_ns") else created,
            "isWorking": working,
            "workingTime": created if working else -1,
            "origQuoteOrderQty": bn(
                c.quote_budget if c and c.quote_budget and c.side == r.Side.BUY else None
            ),
            "selfTradePreventionMode": STP_OUT[c.self_trade_prevention] if c else "EXPIRE_TAKER",
        }

    async def get_order(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        who.require("read")
        await self.gw.instruments_ready()
        return self.order_view(await self.find(who, params, self.instrument(params)))

    async def cancel_order(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        await self.gw.instruments_ready()
        i = self.instrument(params)
        order = await self.find(who, params, i, cancel=True)
        return await self.cancel(
            who,
            order,
            request.headers.get("X-Request-Id") or uuid.uuid4().hex,
            params.get("newClientOrderId"),
        )

    async def cancel(
        self, who: Principal, order: Order, request_id: str, new_client_id: str | None = None
    ) -> dict[str, Any]:
        """Cancel through the gateway and wait (bounded) for the order to end; Binance's cancel answer."""
        if order.state is not None and order.state.get("status") in {s.value for s in TERMINAL}:
            raise BnError(-2011, "Unknown order sent.")
        with self.watch(who.account_id, client_id_of(order.doc, order.order_id)) as reports:
            try:
                await self.gw.cancel(who, {"order_id": order.order_id}, request_id)
            except ApiError as e:
                raise translated(e, cancel=True) from None
            seen = await self.outcome(reports, True)
        if seen:  # not ended within the wait: the cancel is requested, the order's reports tell the rest
            order.state = report_state(seen[-1])
        return canceled_view(self.order_view(order), new_client_id)

    async def open_states(self, who: Principal, symbol: str | None) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"account_id": who.account_id, "status": {"$in": list(LIVE)}}
        if symbol:
            query["symbol"] = symbol
        return [dict(d) async for d in self.gw.db["trader_orders"].find(query).sort("ts_ns", 1).limit(1000)]

    async def open_orders(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        who.require("read")
        await self.gw.instruments_ready()
        symbol = self.instrument(params).symbol if params.get("symbol") else None
        orders = await self.orders_of(who, await self.open_states(who, symbol))
        return [self.order_view(o) for o in orders]

    async def cancel_open_orders(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        await self.gw.instruments_ready()
        i = self.instrument(params)
        orders = await self.orders_of(who, await self.open_states(who, i.symbol))
        if not orders:
            raise BnError(-2011, "Unknown order sent.")
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        return list(await asyncio.gather(*(self.cancel(who, o, request_id) for o in orders)))

    async def page(
        self, who: Principal | None, params: Params
    ) -> tuple[Principal, r.Instrument, int, tuple[int | None, int | None]]:
        """A signed read of a symbol's records: the caller (read permission), the instrument, `limit`
        (500, at most 1000) and `startTime`, `endTime`."""
        assert who is not None
        who.require("read")
        await self.gw.instruments_ready()
        limit = params.integer("limit", 500, 1, 1000)
        assert limit is not None
        return who, self.instrument(params), limit, (params.integer("startTime"), params.integer("endTime"))

    async def all_orders(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        """The symbol's orders by orderId (creation time), from `orderId` or `startTime` on; an order
        list's orders each (its document is counted once against `limit`)."""
        who, i, limit, window = await self.page(who, params)
        from_id = params.integer("orderId", None, 0, MAX_BINANCE_ID)
        docs = await self.paged_docs(who, {"symbol": i.symbol}, from_id, window, limit)
        ids = {d["order_id"]: order_ids(d) for d in docs}
        states = await self.states_of(who, [oid for each in ids.values() for oid in each])
        return [
            self.order_view(Order(d, oid, self.command_of(d, oid), states.get(oid)))
            for d in docs
            for oid in ids[d["order_id"]]
        ]

    async def paged_docs(
        self,
        who: Principal,
        query: dict[str, Any],
        from_id: int | None,
        window: tuple[int | None, int | None],
        limit: int,
    ) -> list[dict[str, Any]]:
        """The account's idempotency documents matching `query` by creation time: from the Binance id
        `from_id` (its own number, see order_number) or the `window`'s start on, else the latest `limit`."""
        start, end = window
        ts: dict[str, Any] = {}
        if from_id is not None:
            ts["$gte"] = (from_id >> 11) / 1000 - 0.002
        elif start is not None:
            ts["$gte"] = start / 1000
        if end is not None:
            ts["$lte"] = end / 1000 + 0.001
        query = {"account_id": who.account_id, **query}
        if ts:
            query["ts"] = ts
        forward = ts.get("$gte") is not None
        cursor = self.gw.orders.find(query).sort("ts", 1 if forward else -1).limit(limit + 10)
        docs = [dict(d) async for d in cursor]
        docs.sort(key=lambda d: d["ts"])
        if from_id is not None:
            docs = [d for d in docs if order_number(d) >= from_id]
        return docs[:limit] if forward else docs[-limit:]

    async def states_of(self, who: Principal, order_ids_: list[str]) -> dict[str, dict[str, Any]]:
        """The stored states (trader_orders) of the account's orders, by order id."""
        found = self.gw.db["trader_orders"].find({"_id": {"$in": order_ids_}, "account_id": who.account_id})
        return {d["_id"]: dict(d) async for d in found}

    async def my_trades(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        """The account's fills in the symbol (the collector's order_events), oldest first."""
        who, i, limit, (start, end) = await self.page(who, params)
        from_id = params.integer("fromId")
        query: dict[str, Any] = {"account_id": who.account_id, "symbol": i.symbol, "trade_id": {"$ne": None}}
        if params.get("orderId"):
            order = await self.find(who, params, i, names=("orderId", "-"))
            query["order_id"] = order.order_id
        events = [dict(d) async for d in self.gw.db["order_events"].find(query).sort("ts_ns", -1).limit(5000)]
        events = [
            e
            for e in events
            if e.get("last_fill_quantity")
            and (start is None or ms(e["ts_ns"]) >= start)
            and (end is None or ms(e["ts_ns"]) <= end)
            and (from_id is None or number(e["trade_id"]) >= from_id)
        ]
        events.sort(key=lambda e: (e["ts_ns"], e["sequence"]))
        events = events[:limit] if start is not None or from_id is not None else events[-limit:]
        earlier = await self.fees_before(who, events)
        docs = {
            d["order_id"]: dict(d)
            async for d in self.gw.orders.find(
                {
                    "order_id": {"$in": sorted({e["order_id"].partition("/")[0] for e in events})},
                    "account_id": who.account_id,
                }
            )
        }
        rows = []
        for e in events:
            price, qty = Decimal(e["last_fill_price"]), Decimal(e["last_fill_quantity"])
            doc = docs.get(e["order_id"].partition("/")[0])
            rows.append(
                {
                    "symbol": bn_symbol(i),
                    "id": number(e["trade_id"]),
                    "orderId": order_number(doc, e["order_id"]) if doc else number(e["order_id"]),
                    "orderListId": list_number(doc, e["order_id"]),
                    "price": bn(price),
                    "qty": bn(qty),
                    "quoteQty": bn(price * qty),
                    "commission": bn(Decimal(e.get("fees") or 0) - earlier[(e["order_id"], e["sequence"])]),
                    "commissionAsset": e.get("fee_asset") or i.quote_asset,
                    "time": ms(e["ts_ns"]),
                    "isBuyer": e.get("side") == "BUY",
                    "isMaker": e.get("last_liquidity") == "MAKER",
                    "isBestMatch": True,
                }
            )
        return rows

    async def fees_before(
        self, who: Principal, events: list[dict[str, Any]]
    ) -> dict[tuple[str, int], Decimal]:
        """Per fill, the order's cumulative fees before it (a report carries them cumulative)."""
        ids = sorted({e["order_id"] for e in events})
        history: dict[str, list[tuple[int, Decimal]]] = {}
        async for d in self.gw.db["order_events"].find(
            {"account_id": who.account_id, "order_id": {"$in": ids}}
        ):
            history.setdefault(d["order_id"], []).append((d["sequence"], Decimal(d.get("fees") or 0)))
        before = {}
        for e in events:
            older = [f for seq, f in history.get(e["order_id"], []) if seq < e["sequence"]]
            before[(e["order_id"], e["sequence"])] = max(older, default=Decimal(0))
        return before

    async def account(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        who.require("read")
        have = await balances(self.gw.db, who.account_id)
        omit = params.get("omitZeroBalances") == "true"
        rows = [
            {"asset": a, "free": bn(b["free"]), "locked": bn(b["held"])}
            for a, b in sorted(have.items())
            if not (omit and not Decimal(b["free"]) and not Decimal(b["held"]))
        ]
        fees = sorted(self.gw.instruments.latest.values(), key=lambda i: i.symbol)
        maker, taker = (fees[0].maker_fee, fees[0].taker_fee) if fees else (Decimal(0), Decimal(0))
        return {
            "makerCommission": int(maker * 10_000),
            "takerCommission": int(taker * 10_000),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": bn(maker), "taker": bn(taker), "buyer": bn(0), "seller": bn(0)},
            "canTrade": "trade" in who.permissions,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": int(time.time() * 1000),
            "accountType": "SPOT",
            "balances": rows,
            "permissions": ["SPOT"],
            "uid": number(who.account_id),
        }

    async def cancel_replace(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        """Cancel an order, then place a new one (STOP_ON_FAILURE: not if the cancel failed)."""
        assert who is not None
        await self.gw.instruments_ready()
        i = self.instrument(params)
        mode = params.choice("cancelReplaceMode", {"STOP_ON_FAILURE": 0, "ALLOW_FAILURE": 0})
        if mode is None:
            raise mandatory("cancelReplaceMode")
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        self.order_fields(params, i)  # the new order's parameters are checked before anything is canceled
        canceled: dict[str, Any] | BnError
        try:
            order = await self.find(
                who, params, i, cancel=True, names=("cancelOrderId", "cancelOrigClientOrderId")
            )
            canceled = await self.cancel(who, order, request_id, params.get("cancelNewClientOrderId"))
        except BnError as e:
            canceled = e
        if isinstance(canceled, BnError) and mode == "STOP_ON_FAILURE":
            raise BnError(-2022, "Order cancel-replace failed.", 400, {}) from None
        placed: dict[str, Any] | BnError
        try:
            placed = await self.place(who, params, request_id)
        except BnError as e:
            placed = e
        if isinstance(placed, BnError) or isinstance(canceled, BnError):
            raise BnError(-2021, "Order cancel-replace partially failed.")
        return {
            "cancelResult": "SUCCESS",
            "newOrderResult": "SUCCESS",
            "cancelResponse": canceled,
            "newOrderResponse": placed,
        }

    # -- user data stream keys -------------------------------------------------------------------

    async def listen_key_new(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        return {"listenKey": await self.streams.keys.new(who)}

    async def listen_key_keep(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        await self.streams.keys.keep(who, params.need("listenKey"))
        return {}

    async def listen_key_close(self, request: web.Request, params: Params, who: Principal | None) -> Any:
        assert who is not None
        await self.streams.keys.close(who, params.need("listenKey"))
        return {}


def affordable(levels: list[tuple[Decimal, Decimal]], quote: Decimal, lot: Decimal) -> Decimal:
    """The quantity (in lots) that `quote` buys, or sells for, walking the book's levels best first."""
    spent, quantity = Decimal(0), Decimal(0)
    for price, size in levels:
        lots = min(size, (quote - spent) / price) // lot * lot
        spent, quantity = spent + lots * price, quantity + lots
        if lots < size:
            break
    if not quantity:
        raise BnError(-2010, "No liquidity.")
    return quantity


def client_id_of(doc: dict[str, Any], order_id: str) -> str:
    """An order's client id: its document's, or for an order `<id>/<n>` of a list or basket,
    `<the document's client id>/<n>`."""
    if "/" not in order_id:
        return str(doc["client_order_id"])
    return f"{doc['client_order_id']}/{order_id.rsplit('/', 1)[1]}"


def order_ids(doc: dict[str, Any]) -> list[str]:
    """The orders of an idempotency document as Binance lists them: an order list's legs, else itself."""
    if list_kind(doc) is None:
        return [doc["order_id"]]
    return [f"{doc['order_id']}/{k}" for k in range(len(doc["legs"]))]


def binance_status(status: str | None, filled: Decimal, reason: str | None) -> str:
    if status in (None, "NEW", "ACCEPTED", "TRIGGERED", "REPLACED"):
        return "PARTIALLY_FILLED" if filled > 0 else "NEW"
    if status == "CANCELED":
        if reason == "SELF_TRADE_PREVENTION":
            return "EXPIRED_IN_MATCH"
        return "EXPIRED" if reason in EXPIRING else "CANCELED"
    return status


def result_view(view: dict[str, Any]) -> dict[str, Any]:
    """An order object as a new order's RESULT answers it (and an order list's orderReports)."""
    kept = {k: v for k, v in view.items() if k not in ("time", "updateTime", "isWorking")}
    head = {k: view[k] for k in ("symbol", "orderId", "orderListId", "clientOrderId")}
    return {**head, "transactTime": view["time"], **kept}


def canceled_view(view: dict[str, Any], new_client_id: str | None) -> dict[str, Any]:
    """An order object as a cancel answers it: `clientOrderId` names the cancel (`newClientOrderId`, or
    one made as Binance does), `origClientOrderId` the order."""
    view = dict(view)
    view["origClientOrderId"] = view["clientOrderId"]
    view["clientOrderId"] = new_client_id or f"os-{uuid.uuid4().hex[:22]}"
    view["transactTime"] = int(time.time() * 1000)
    for k in ("time", "updateTime", "isWorking", "workingTime", "origQuoteOrderQty"):
        view.pop(k, None)
    return view


def report_state(report: r.ExecutionReport) -> dict[str, Any]:
    """An execution report as the stored state of its order (what `trader_orders` holds)."""
    from orderstream.common.history import order_document

    return order_document(report)


def fills(reports: list[r.ExecutionReport]) -> list[dict[str, Any]]:
    """FULL's fills: one per report with a fill, its commission the rise of the cumulative fees."""
    rows, fees = [], Decimal(0)
    for rep in reports:
        if rep.last_fill_quantity and rep.last_fill_price is not None:
            rows.append(
                {
                    "price": bn(rep.last_fill_price),
                    "qty": bn(rep.last_fill_quantity),
                    "commission": bn(rep.fees - fees),
                    "commissionAsset": rep.fee_asset or "",
                    "tradeId": number(rep.trade_id or ""),
                }
            )
        fees = rep.fees
    return rows


B = BinanceApi
ROUTES = (
    Route("GET", "/api/v3/ping", B.ping),
    Route("GET", "/api/v3/time", B.time),
    Route("GET", "/api/v3/exchangeInfo", B.exchange_info, 20),
    Route("GET", "/api/v3/depth", B.depth, 5),
    Route("GET", "/api/v3/trades", B.trades, 25),
    Route("GET", "/api/v3/aggTrades", B.agg_trades, 4),
    Route("GET", "/api/v3/klines", B.klines, 2),
    Route("GET", "/api/v3/ticker/24hr", B.ticker_24hr, 2),
    Route("GET", "/api/v3/ticker/price", B.ticker_price, 2),
    Route("GET", "/api/v3/ticker/bookTicker", B.book_ticker, 2),
    Route("POST", "/api/v3/order", B.new_order, 1, "SIGNED"),
    Route("POST", "/api/v3/order/test", B.test_order, 1, "SIGNED"),
    Route("GET", "/api/v3/order", B.get_order, 4, "SIGNED"),
    Route("DELETE", "/api/v3/order", B.cancel_order, 1, "SIGNED"),
    Route("POST", "/api/v3/order/cancelReplace", B.cancel_replace, 1, "SIGNED"),
    Route("GET", "/api/v3/openOrders", B.open_orders, 6, "SIGNED"),
    Route("DELETE", "/api/v3/openOrders", B.cancel_open_orders, 1, "SIGNED"),
    Route("GET", "/api/v3/allOrders", B.all_orders, 20, "SIGNED"),
    Route("GET", "/api/v3/myTrades", B.my_trades, 20, "SIGNED"),
    Route("GET", "/api/v3/account", B.account, 20, "SIGNED"),
    Route("POST", "/api/v3/userDataStream", B.listen_key_new, 2, "API_KEY"),
    Route("PUT", "/api/v3/userDataStream", B.listen_key_keep, 2, "API_KEY"),
    Route("DELETE", "/api/v3/userDataStream", B.listen_key_close, 2, "API_KEY"),
)


def register(app: web.Application, gw: Gateway) -> BinanceApi:
    """The Binance-compatible API's routes and streams on the gateway's application."""
    from orderstream.gateway.binance_lists import LIST_ROUTES  # the order lists build on this module

    bapi = BinanceApi(gw)
    app.on_startup.append(bapi.start)
    app.on_cleanup.append(bapi.stop)
    for route in ROUTES + LIST_ROUTES:
        app.router.add_route(route.method, route.path, bapi.handler(route))
    bapi.streams.register(app)
    return bapi

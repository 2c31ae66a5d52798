"""The Binance-compatible WebSocket streams: `/ws/<stream>[/<stream>...]` (raw payloads) and
`/stream?streams=<a>/<b>` (each wrapped `{"stream", "data"}`), plus SUBSCRIBE / UNSUBSCRIBE /
LIST_SUBSCRIPTIONS frames on either.

Market streams, `<symbol>` in lower case (`btcusd`): `@trade`, `@aggTrade`, `@depth` (diffs,
`@depth@100ms` too), `@depth5|10|20` (partial book), `@kline_<interval>`, `@bookTicker`, `@ticker`. They
ride on the gateway's market-data reader (`Gateway.market_subscribers`, one decode per record) and on
the one-minute candles of `binance_market.MarketCache`.

The user data stream: a listenKey (`POST /api/v3/userDataStream` with `X-MBX-APIKEY`, kept in MongoDB
`gateway_listen_keys` so any gateway serves it, alive `LISTEN_KEY_TTL_S` after its last POST or PUT)
as a stream name; the gateway's per-account fan-out then pushes `executionReport` for each execution
report, `outboundAccountPosition` for each balance change of collateral.events, and `balanceUpdate`
for deposits and withdrawals, with Binance's field names.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from orderstream.common import records as r
from orderstream.common.mirror import Mirror
from orderstream.gateway.app import Gateway
from orderstream.gateway.auth import Principal
from orderstream.gateway.binance_market import INTERVALS_MS, bn, bn_symbol, ms, number
from orderstream.gateway.docapi import Book
from orderstream.gateway.jsonrpc import serve
from orderstream.gateway.streams import Connection

if TYPE_CHECKING:
    from orderstream.gateway.binance import BinanceApi

STREAM = re.compile(
    r"^(?P<symbol>[a-z0-9]+)@(?P<kind>trade|aggTrade|bookTicker|ticker|depth(?P<levels>5|10|20)?"
    r"(?:@(?:100|1000)ms)?|kline_(?P<interval>[0-9]+[mhd]))$"
)
LISTEN_KEY = re.compile(r"^[A-Za-z0-9]{60,64}$")
MAX_STREAMS = 1024
BALANCE_EVENTS = (r.Deposited, r.Withdrawn, r.CollateralHeld, r.CollateralReleased, r.FillSettled)


class ListenKeys:
    """listenKeys in MongoDB (`gateway_listen_keys`, `_id` = key), one alive per account."""

    def __init__(self, gw: Gateway) -> None:
        self.collection = gw.db["gateway_listen_keys"]
        self.ttl_s = gw.settings.binance_listen_key_ttl_s

    def _expires(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.ttl_s)

    async def new(self, who: Principal) -> str:
        """The account's live listenKey, kept alive again; a new one when it has none (as Binance does)."""
        async for doc in self.collection.find({"account_id": who.account_id}):
            if doc["expires"] > datetime.now(UTC):
                await self.collection.update_one({"_id": doc["_id"]}, {"$set": {"expires": self._expires()}})
                return str(doc["_id"])
            await self.collection.delete_one({"_id": doc["_id"]})
        key = secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")[:64]
        await self.collection.insert_one(
            {
                "_id": key,
                "account_id": who.account_id,
                "key_id": who.key_id,
                "permissions": sorted(who.permissions),
                "expires": self._expires(),
            }
        )
        return key

    async def keep(self, who: Principal, key: str) -> None:
        from orderstream.gateway.binance import BnError

        found = await self.collection.update_one(
            {"_id": key, "account_id": who.account_id}, {"$set": {"expires": self._expires()}}
        )
        if not found.matched_count:
            raise BnError(-1125, "This listenKey does not exist.")

    async def close(self, who: Principal, key: str) -> None:
        from orderstream.gateway.binance import BnError

        gone = await self.collection.delete_one({"_id": key, "account_id": who.account_id})
        if not gone.deleted_count:
            raise BnError(-1125, "This listenKey does not exist.")

    async def owner(self, key: str) -> Principal | None:
        doc = await self.collection.find_one({"_id": key})
        if doc is None or doc["expires"] <= datetime.now(UTC):
            return None
        return Principal(doc["key_id"], doc["account_id"], frozenset(doc["permissions"]))


class Streams:
    def __init__(self, bapi: BinanceApi) -> None:
        self.bapi, self.gw = bapi, bapi.gw
        self.keys = ListenKeys(self.gw)
        self.halts = Mirror.standalone(self.gw.settings, self.gw.codec, "risk.commands", r.SetKillSwitch)
        self.books: dict[str, Book] = {}
        self.diff: tuple[Any, int] | None = None  # the last BookUpdate and the first id of its diff event
        self.kline_conns: set[BinanceConnection] = set()
        self.fees: OrderedDict[str, Decimal] = OrderedDict()  # order id -> cumulative fees last pushed
        bapi.market.listeners.append(self.candle)

    # -- books ---------------------------------------------------------------------------------

    def book(self, symbol: str) -> Book:
        """The symbol's book: md.depth's latest snapshot and md.book updates after it (while streams
        follow the symbol)."""
        book = self.books.setdefault(symbol, Book())
        book.snapshot(self.gw.depth.get(symbol))
        return book

    def levels(self, symbol: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        view = self.book(symbol).view(symbol, 1000)
        return [tuple(x) for x in view["bids"]], [tuple(x) for x in view["asks"]]  # type: ignore[misc]

    def best(self, symbol: str) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
        view = self.book(symbol).view(symbol, 1)
        zero = (Decimal(0), Decimal(0))
        return (
            tuple(view["bids"][0]) if view["bids"] else zero,  # type: ignore[return-value]
            tuple(view["asks"][0]) if view["asks"] else zero,
        )

    def applied(self, update: r.BookUpdate) -> int:
        """Apply a book update once (whichever connection hears it first); the first update id of its
        diff event: one after the book's previous state, so a client's book built from GET depth
        (lastUpdateId) continues without a gap."""
        if self.diff is None or self.diff[0] is not update:
            book = self.book(update.symbol)
            first = max(book.sequence, 0) + 1
            book.apply(update)
            self.diff = (update, first)
        return self.diff[1]

    # -- events ----------------------------------------------------------------------------------

    def name(self, symbol: str) -> str:
        instrument = self.gw.instruments.get(symbol)
        return bn_symbol(instrument) if instrument else symbol.replace("-", "")

    def market_events(self, record: Any, kind: str, levels: str | None) -> dict[str, Any] | None:
        now = int(time.time() * 1000)
        if isinstance(record, r.Trade) and kind in ("trade", "aggTrade"):
            tid = number(record.trade_id)
            event: dict[str, Any] = {"e": kind, "E": now, "s": self.name(record.symbol)}
            if kind == "trade":
                event |= {"t": tid}
            else:
                event |= {"a": tid, "f": tid, "l": tid}
            return event | {
                "p": bn(record.price),
                "q": bn(record.quantity),
                "T": ms(record.ts_event),
                "m": record.aggressor_side == r.Side.SELL,
                "M": True,
            }
        if isinstance(record, r.BookUpdate):
            first = self.applied(record)
            book = self.book(record.symbol)
            if kind.startswith("depth") and levels:
                view = book.view(record.symbol, int(levels))
                return {
                    "lastUpdateId": book.sequence,
                    "bids": [[bn(p), bn(q)] for p, q in view["bids"]],
                    "asks": [[bn(p), bn(q)] for p, q in view["asks"]],
                }
            if kind.startswith("depth"):
                sides: dict[str, list[list[str]]] = {"b": [], "a": []}
                for level in record.changes:
                    sides["a" if level.side == r.BookSide.ASK else "b"].append(
                        [bn(level.price), bn(level.quantity)]
                    )
                return {
                    "e": "depthUpdate",
                    "E": now,
                    "s": self.name(record.symbol),
                    "U": first,
                    "u": record.sequence,
                    **sides,
                }
            if kind == "bookTicker":
                bid, ask = self.best(record.symbol)
                return {
                    "u": record.sequence,
                    "s": self.name(record.symbol),
                    "b": bn(bid[0]),
                    "B": bn(bid[1]),
                    "a": bn(ask[0]),
                    "A": bn(ask[1]),
                }
        if isinstance(record, r.Ticker) and kind == "ticker":
            t = self.bapi.ticker(
                self.name(record.symbol), self.gw.instruments.get(record.symbol) or _stub(record)
            )
            return {
                "e": "24hrTicker",
                "E": now,
                "s": t["symbol"],
                "p": t["priceChange"],
                "P": t["priceChangePercent"],
                "w": t["weightedAvgPrice"],
                "x": t["prevClosePrice"],
                "c": t["lastPrice"],
                "Q": t["lastQty"],
                "b": t["bidPrice"],
                "B": t["bidQty"],
                "a": t["askPrice"],
                "A": t["askQty"],
                "o": t["openPrice"],
                "h": t["highPrice"],
                "l": t["lowPrice"],
                "v": t["volume"],
                "q": t["quoteVolume"],
                "O": t["openTime"],
                "C": t["closeTime"],
                "F": t["firstId"],
                "L": t["lastId"],
                "n": t["count"],
            }
        return None

    def kline_event(self, symbol: str, interval: str, open_ms: int, closed: bool) -> dict[str, Any]:
        k = self.bapi.market.kline_of(symbol, interval, open_ms)
        return {
            "e": "kline",
            "E": int(time.time() * 1000),
            "s": self.name(symbol),
            "k": {
                "t": k[0],
                "T": k[6],
                "s": self.name(symbol),
                "i": interval,
                "f": -1,
                "L": -1,
                "o": k[1],
                "c": k[4],
                "h": k[2],
                "l": k[3],
                "v": k[5],
                "n": k[8],
                "x": closed,
                "q": k[7],
                "V": k[9],
                "Q": k[10],
                "B": "0",
            },
        }

    def candle(self, candle: r.Candle, closed: r.Candle | None) -> None:
        """A new or updated one-minute candle: the kline streams of its symbol hear it (and, when a new
        minute began, the previous one once more, closed)."""
        for conn in list(self.kline_conns):
            for stream, (symbol, kind, _) in conn.streams.items():
                if symbol != candle.symbol or not kind.startswith("kline_"):
                    continue
                interval = kind[len("kline_") :]
                size = INTERVALS_MS[interval]
                start = ms(candle.start)
                if closed is not None and ms(closed.start) // size != start // size:
                    conn.send(stream, self.kline_event(symbol, interval, ms(closed.start), True))
                conn.send(stream, self.kline_event(symbol, interval, start, False))

    def user_event(self, event: Any, who: Principal) -> list[dict[str, Any]]:
        """Binance's user data events for one of our user-stream records."""
        now = int(time.time() * 1000)
        if isinstance(event, r.ExecutionReport):
            return [self.execution_report(event, now)]
        out = []
        if isinstance(event, r.Deposited | r.Withdrawn):
            delta = event.amount if isinstance(event, r.Deposited) else -event.amount
            out.append(
                {"e": "balanceUpdate", "E": now, "a": event.asset, "d": bn(delta), "T": ms(event.ts_event)}
            )
        if isinstance(event, BALANCE_EVENTS):
            out.append(
                {
                    "e": "outboundAccountPosition",
                    "E": now,
                    "u": ms(event.ts_event),
                    "B": [{"a": event.asset, "f": bn(event.free), "l": bn(event.held)}],
                }
            )
        return out

    def execution_report(self, rep: r.ExecutionReport, now: int) -> dict[str, Any]:
        from orderstream.gateway.binance import STP_OUT, TYPES_OUT, binance_status, list_number, order_number

        command = self.bapi.placed.get(rep.order_id)
        doc = self.gw.submitter.known(rep.order_id.partition("/")[0])
        created = int(doc["ts"] * 1000) if doc else ms(rep.ts_event)
        status = binance_status(rep.status.value, rep.filled_quantity, rep.reason)
        filled = bool(rep.last_fill_quantity)
        execution = (
            "TRADE"
            if filled
            else {
                "NEW": "NEW",
                "PARTIALLY_FILLED": "TRADE",
                "FILLED": "TRADE",
                "EXPIRED_IN_MATCH": "TRADE_PREVENTION",
            }.get(status, status)
        )
        if rep.status == r.OrderStatus.REPLACED:
            execution = "REPLACED"
        previous = self.fees.pop(rep.order_id, Decimal(0))
        if rep.status not in (
            r.OrderStatus.FILLED,
            r.OrderStatus.CANCELED,
            r.OrderStatus.REJECTED,
            r.OrderStatus.EXPIRED,
        ):
            self.fees[rep.order_id] = rep.fees
            while len(self.fees) > 10_000:
                self.fees.popitem(last=False)
        kind = "LIMIT_MAKER" if command is not None and command.post_only else TYPES_OUT[rep.order_type]
        average = rep.average_price or Decimal(0)
        return {
            "e": "executionReport",
            "E": now,
            "s": self.name(rep.symbol),
            "c": rep.client_order_id,
            "S": rep.side.value,
            "o": kind,
            "f": command.time_in_force.value if command else "GTC",
            "q": bn(rep.quantity),
            "p": bn(rep.price),
            "P": bn(command.stop_price if command else None),
            "F": bn(command.display_quantity if command else None),
            "g": list_number(doc, rep.order_id),
            "C": "",
            "x": execution,
            "X": status,
            "r": rep.reason if rep.status == r.OrderStatus.REJECTED and rep.reason else "NONE",
            "i": order_number(doc, rep.order_id) if doc else number(rep.order_id),
            "l": bn(rep.last_fill_quantity),
            "z": bn(rep.filled_quantity),
            "L": bn(rep.last_fill_price),
            "n": bn(rep.fees - previous if filled else 0),
            "N": rep.fee_asset if filled else None,
            "T": ms(rep.ts_event),
            "t": number(rep.trade_id) if rep.trade_id else -1,
            "I": rep.sequence,
            "w": status in ("NEW", "PARTIALLY_FILLED"),
            "m": rep.last_liquidity == r.Liquidity.MAKER,
            "M": False,
            "O": created,
            "Z": bn(rep.filled_quantity * average),
            "Y": bn((rep.last_fill_quantity or 0) * (rep.last_fill_price or 0)),
            "Q": bn(command.quote_budget if command else None),
            "W": created,
            "V": STP_OUT[command.self_trade_prevention] if command else "EXPIRE_TAKER",
        }

    # -- serving ---------------------------------------------------------------------------------

    def register(self, app: web.Application) -> None:
        app.router.add_get("/ws/{streams:.+}", self.raw)
        app.router.add_get("/stream", self.combined)

    async def raw(self, request: web.Request) -> web.StreamResponse:
        return await self.open(request, request.match_info["streams"].split("/"), combined=False)

    async def combined(self, request: web.Request) -> web.StreamResponse:
        names = [s for s in request.query.get("streams", "").split("/") if s]
        return await self.open(request, names, combined=True)

    async def open(self, request: web.Request, names: list[str], combined: bool) -> web.StreamResponse:
        """Check the streams (a listenKey is looked up), then serve the connection."""
        await self.gw.instruments_ready()
        parsed, owner = await self.parse(names)
        if isinstance(parsed, str):
            return web.json_response(
                {"code": -1121 if "symbol" in parsed else -1125, "msg": parsed}, status=400
            )
        factory = partial(BinanceConnection, streams=self, wanted=parsed, combined=combined, owner=owner)
        return await serve(request, self.answer, factory)

    async def parse(
        self, names: list[str]
    ) -> tuple[dict[str, tuple[str, str, str | None]] | str, Principal | None]:
        """Each stream name as (our symbol or "" for a listenKey, kind, depth levels); a refusal's text."""
        out: dict[str, tuple[str, str, str | None]] = {}
        owner = None
        by_name = {bn_symbol(i).lower(): s for s, i in self.gw.instruments.latest.items()}
        for name in names[:MAX_STREAMS]:
            m = STREAM.match(name)
            if m is not None:
                symbol = by_name.get(m["symbol"])
                if symbol is None:
                    return f"Invalid symbol in stream {name}.", None
                interval = m["interval"]
                if interval is not None and interval not in INTERVALS_MS:
                    return f"Invalid interval in stream {name}.", None
                out[name] = (symbol, m["kind"].split("@")[0], m["levels"])
            elif LISTEN_KEY.match(name):
                who = await self.keys.owner(name)
                if who is None or (owner is not None and owner.account_id != who.account_id):
                    return "This listenKey does not exist.", None
                owner = who
                out[name] = ("", "user", None)
            else:
                return f"Invalid stream name {name}.", None
        return out, owner

    async def answer(self, gw: Gateway, conn: Connection, text: str) -> dict[str, Any]:
        """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS, as Binance's stream servers answer them."""
        assert isinstance(conn, BinanceConnection)
        try:
            frame = json.loads(text)
            rid, method, params = frame.get("id"), frame.get("method"), frame.get("params", [])
        except (ValueError, AttributeError):
            return {"error": {"code": 3, "msg": "Invalid JSON: the frame is no JSON object"}}
        if method == "LIST_SUBSCRIPTIONS":
            return {"result": sorted(conn.streams), "id": rid}
        if (
            method not in ("SUBSCRIBE", "UNSUBSCRIBE")
            or not isinstance(params, list)
            or not all(isinstance(p, str) for p in params)
        ):
            return {
                "error": {"code": 2, "msg": f"Invalid request: unknown method or params {method!r}"},
                "id": rid,
            }
        if method == "UNSUBSCRIBE":
            for name in params:
                conn.drop(name)
            return {"result": None, "id": rid}
        parsed, owner = await self.parse(params)
        if isinstance(parsed, str) or (
            owner is not None and conn.owner is not None and owner.account_id != conn.owner.account_id
        ):
            return {"error": {"code": 2, "msg": f"Invalid request: {parsed}"}, "id": rid}
        conn.follow(parsed, owner)
        return {"result": None, "id": rid}


def _stub(ticker: r.Ticker) -> r.Instrument:  # a ticker of an instrument not (or no longer) listed
    zero = Decimal(0)
    return r.Instrument(
        symbol=ticker.symbol,
        base_asset=ticker.symbol,
        quote_asset="",
        tick_size=Decimal(1),
        lot_size=Decimal(1),
        min_quantity=zero,
        min_notional=zero,
        maker_fee=zero,
        taker_fee=zero,
        venue="",
        enabled=False,
    )


class BinanceConnection(Connection):
    """A client of Binance's stream servers: its streams, raw or combined."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        limit: int,
        streams: Streams,
        wanted: dict[str, tuple[str, str, str | None]],
        combined: bool,
        owner: Principal | None,
    ) -> None:
        super().__init__(ws, limit)
        self.api, self.combined = streams, combined
        self.streams: dict[str, tuple[str, str, str | None]] = {}
        self.owner: Principal | None = None
        self.follow(wanted, owner)

    def follow(self, wanted: dict[str, tuple[str, str, str | None]], owner: Principal | None) -> None:
        gw = self.api.gw
        for name, (symbol, kind, levels) in wanted.items():
            self.streams[name] = (symbol, kind, levels)
            if kind == "user":
                continue
            if kind.startswith("kline_"):
                self.api.kline_conns.add(self)
                continue
            self.markets[symbol] = 0  # every update of the symbol: the streams' books take them
            gw.market_subscribers.setdefault(symbol, set()).add(self)
            self.api.book(symbol)
        if owner is not None and self.owner is None:
            self.owner = owner
            gw.log_in(self, owner)
            self.user_stream = True

    def drop(self, name: str) -> None:
        symbol, _kind, _ = self.streams.pop(name, ("", "", None))
        if symbol and not any(
            s == symbol and not k.startswith("kline_") for s, k, _ in self.streams.values()
        ):
            self.markets.pop(symbol, None)
            self.api.gw.market_subscribers.get(symbol, set()).discard(self)
        if not any(k.startswith("kline_") for _, k, _ in self.streams.values()):
            self.api.kline_conns.discard(self)
        if not any(k == "user" for _, k, _ in self.streams.values()):
            self.user_stream = False

    def wrap(self, stream: str, data: dict[str, Any]) -> str:
        return json.dumps({"stream": stream, "data": data} if self.combined else data)

    def send(self, stream: str, data: dict[str, Any]) -> None:
        if not self.push(self.wrap(stream, data)):
            asyncio.get_running_loop().create_task(self.api.gw._drop_slow(self))

    def market_message(self, record: Any, frame: str) -> str | None:
        symbol = getattr(record, "symbol", None)
        for stream, (s, kind, levels) in list(self.streams.items()):
            if s == symbol:
                event = self.api.market_events(record, kind, levels)
                if event is not None:
                    self.send(stream, event)
        if isinstance(record, r.BookUpdate):
            self.api.applied(
                record
            )  # the shared book moves on even when no stream of this connection shows it
        return None

    def user_message(self, event: Any, frame: str) -> str | None:
        if self.owner is None:
            return None
        names = [n for n, (_, kind, _) in self.streams.items() if kind == "user"]
        for data in self.api.user_event(event, self.owner):
            for name in names:
                self.send(name, data)
        return None

    def close(self) -> None:
        super().close()
        self.api.kline_conns.discard(self)

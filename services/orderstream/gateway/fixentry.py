"""FIX 4.4 order entry: institutional clients over FIX, on the session layer the router's FIX
venues use (common/fix), here as the acceptor.

Two transports, one session per API key:
- TCP, classic tag=value (`ORDERSTREAM_GATEWAY_FIX_PORT`, 9878; 0 turns it off);
- WebSocket `/fix` on the public port, FIX 4.4 in the FIX Trading Community's JSON encoding:
  each frame one message `{"Header": {...}, "Body": {...}, "Trailer": {}}` with field names as
  keys and values as strings; a repeating group is a list of objects under its NumInGroup
  field's name (each entry's first key is the group's first field). The JSON is turned into
  tag=value for the session layer and back, so both transports behave the same.

Logon: SenderCompID = Username (553) = the API key id, Password (554) = its secret (send it
only over TLS), TargetCompID = `FIX_COMP_ID` (ORDERSTREAM). The key needs the trade
permission. Sequence numbers and sent messages are kept per key under
`<data_dir>/gateway/fix/<key id>`, so a reconnect, or a gateway restart, resumes the session;
execution reports for a client that is disconnected are kept with their sequence numbers and
resent when it logs on again and asks (ResendRequest).

In: NewOrderSingle (D), OrderCancelRequest (F), OrderCancelReplaceRequest (G),
OrderStatusRequest (H), NewOrderList (E: each order of the list placed as its own order).
Out: ExecutionReport (8) for every report of the key's account, OrderCancelReject (9) for a
refused cancel or replace, BusinessMessageReject (j) for a message we do not take, and the
session layer's Reject (3) for one that breaks the FIX 4.4 dictionary. A client's ClOrdID is
its client_order_id. Mapping: OrdType 1 MARKET, 2 LIMIT, 3 STOP_MARKET, 4 STOP_LIMIT, J
TAKE_PROFIT_MARKET (with Price: TAKE_PROFIT_LIMIT), P with ExecInst a TRAILING_STOP
(PegOffsetValue, PegOffsetType 0 price or 1 basis points); TimeInForce 1 GTC, 3 IOC, 4 FOK,
6 GTD (ExpireTime); ExecInst 6 post-only; MaxFloor the displayed quantity of an iceberg.
"""

from __future__ import annotations

import asyncio
import calendar
import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import simplefix
from aiohttp import WSMsgType, web

from orderstream.common import records as r
from orderstream.common.fix.dictionary import Dictionary
from orderstream.common.fix.session import Acceptor, Message, Session, SessionConfig, new_parser
from orderstream.common.fix.store import SessionStore
from orderstream.gateway.auth import Principal
from orderstream.gateway.errors import ApiError

if TYPE_CHECKING:
    from orderstream.gateway.app import Gateway

log = logging.getLogger(__name__)

SIDES = {"1": "BUY", "2": "SELL"}
FIX_SIDES = {v: k for k, v in SIDES.items()}
TIFS = {"1": "GTC", "3": "IOC", "4": "FOK", "6": "GTD"}
FIX_TIFS = {v: k for k, v in TIFS.items()}
FIX_TYPES = {"MARKET": "1", "LIMIT": "2", "STOP_MARKET": "3", "STOP_LIMIT": "4", "TAKE_PROFIT_MARKET": "J",
             "TAKE_PROFIT_LIMIT": "J", "TRAILING_STOP": "P"}
STATUS = {"NEW": "0", "ACCEPTED": "0", "TRIGGERED": "0", "PARTIALLY_FILLED": "1", "FILLED": "2",
          "CANCELED": "4", "REJECTED": "8", "EXPIRED": "C"}
KEY_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def order_params(msg: Message) -> dict[str, Any]:
    """A NewOrderSingle (or an entry of a NewOrderList) as the gateway's order.place parameters."""
    ord_type, exec_inst = msg.get(40) or "", (msg.get(18) or "").split()
    types = {"1": "MARKET", "2": "LIMIT", "3": "STOP_MARKET", "4": "STOP_LIMIT", "P": "TRAILING_STOP",
             "J": "TAKE_PROFIT_LIMIT" if msg.get(44) else "TAKE_PROFIT_MARKET"}
    if ord_type not in types:
        raise ApiError(40001, f"OrdType (40) {ord_type!r} is not supported: use one of {sorted(types)}",
                       {"field": "OrdType"})
    tif = msg.get(59) or "1"
    if tif not in TIFS:
        raise ApiError(40001, f"TimeInForce (59) {tif!r} is not supported: use 1 GTC, 3 IOC, 4 FOK or 6 GTD",
                       {"field": "TimeInForce"})
    params: dict[str, Any] = {
        "client_order_id": msg.get(11), "symbol": msg.get(55),
        "side": SIDES.get(msg.get(54) or "", msg.get(54)), "order_type": types[ord_type],
        "time_in_force": TIFS[tif], "quantity": msg.get(38),
    }
    optional = {"price": 44, "stop_price": 99, "display_quantity": 111}
    params |= {name: msg.get(tag) for name, tag in optional.items() if msg.get(tag) is not None}
    if ord_type == "P":
        if "a" not in exec_inst:
            raise ApiError(40001, "OrdType P (pegged) is taken as a trailing stop: ExecInst (18) must hold a",
                           {"field": "ExecInst"})
        offset = Decimal(msg.get(211) or "0")
        percent = msg.get(836) == "1"  # basis points
        params |= {"trailing_offset": str(offset / 100 if percent else offset),
                   "trailing_offset_type": "PERCENT" if percent else "PRICE"}
    if "6" in exec_inst:
        params["post_only"] = True
    if tif == "6":
        expire = msg.get(126)
        if expire is None:
            raise ApiError(40001, "TimeInForce 6 (GTD) needs ExpireTime (126)", {"field": "ExpireTime"})
        params["expire_at"] = utc_ns(expire)
    return params


def utc_ns(stamp: str) -> int:
    seconds = calendar.timegm(time.strptime(stamp[:17], "%Y%m%d-%H:%M:%S"))
    return seconds * 10**9 + int(Decimal("0" + stamp[17:]) * 10**9)


def report_body(
    rep: r.ExecutionReport, exec_type: str, cl_ord_id: str, orig: str | None
) -> list[tuple[int, object]]:
    """Our execution report as a FIX 4.4 ExecutionReport body."""
    status = STATUS.get(rep.status.value, "0")
    if rep.status == r.OrderStatus.REPLACED:
        status = "1" if rep.filled_quantity else "0"
    body: list[tuple[int, object]] = [
        (37, rep.order_id), (11, cl_ord_id), (17, rep.event_id), (150, exec_type), (39, status),
        (55, rep.symbol), (54, FIX_SIDES[rep.side.value]), (38, rep.quantity),
        (40, FIX_TYPES.get(rep.order_type.value, "2")), (151, rep.remaining_quantity),
        (14, rep.filled_quantity), (6, rep.average_price or Decimal(0)),
        (60, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(rep.ts_event / 1e9))),
    ]
    if orig is not None:
        body.append((41, orig))
    if rep.price is not None:
        body.append((44, rep.price))
    if exec_type == "F":
        body += [(32, rep.last_fill_quantity or Decimal(0)), (31, rep.last_fill_price or Decimal(0)),
                 (527, rep.trade_id or rep.event_id)]  # SecondaryExecID: our trade id
    if rep.status == r.OrderStatus.REJECTED:
        body.append((103, "99"))
    if rep.reason:
        body.append((58, rep.reason))
    return body


def refusal(rep: r.ExecutionReport) -> bool:
    """A report of a refused cancel or replace: no fill, a reason, and the order as it was (a
    canceled, rejected or expired order carries its reason as its own outcome)."""
    return rep.reason is not None and not rep.last_fill_quantity and rep.status.value not in (
        "CANCELED", "REJECTED", "EXPIRED")


def exec_type_of(rep: r.ExecutionReport) -> str:
    if rep.last_fill_quantity:
        return "F"
    return {"CANCELED": "4", "REPLACED": "5", "REJECTED": "8", "EXPIRED": "C", "TRIGGERED": "L"}.get(
        rep.status.value, "0")


class FixClient:
    """The application behind one key's session: orders in, reports out."""

    def __init__(self, gw: Gateway, key_id: str) -> None:
        self.gw = gw
        self.key_id = key_id
        self.who: Principal | None = None
        self.session: Session | None = None
        # order id -> (kind F/G, the request's ClOrdID, the OrigClOrdID it named) while under way
        self.amending: dict[str, tuple[str, str, str]] = {}
        self.cl_ord_ids: dict[str, str] = {}  # order id -> the ClOrdID the client knows it by now

    async def authenticate(self, session: Session, logon: Message) -> str | None:
        if logon.get(553) != self.key_id:
            return "Username (553) must be your API key id, as SenderCompID is"
        found = await self.gw.keys.lookup(self.key_id)
        if found is None or not hmac.compare_digest(found[2].encode(), (logon.get(554) or "").encode()):
            return "unknown API key or wrong Password (554)"
        account, permissions, _ = found
        if "trade" not in permissions:
            return "this key lacks the trade permission"
        self.who = Principal(self.key_id, account, permissions)
        self.session = session
        self.gw.report_sinks.setdefault(account, set()).add(self.on_report)
        return None

    async def on_logon(self, session: Session) -> None:
        log.info("fix client logged on", extra={"key_id": self.key_id})

    async def on_logout(self, session: Session) -> None:
        log.info("fix client logged out", extra={"key_id": self.key_id})  # reports are kept meanwhile

    def on_not_resent(self, session: Session, msg: Message) -> None:
        pass  # acceptor side: every report is resent, however old

    async def send(self, msg_type: str, body: list[tuple[int, object]]) -> None:
        assert self.session is not None
        await self.session.send(msg_type, body, keep_if_down=True)

    # -- in ------------------------------------------------------------------------------

    async def on_message(self, session: Session, msg: Message) -> None:
        t = msg.msg_type
        handlers: dict[str, Callable[[Message], Awaitable[None]]] = {
            "D": self.new_order, "E": self.new_order_list, "F": self.amend, "G": self.amend, "H": self.status,
        }
        handler = handlers.get(t)
        if handler is None:
            name = session.dictionary.msg_type_name(t) or t
            await self.business_reject(msg, 3, f"{name} is not taken here")
            return
        try:
            await handler(msg)
        except ApiError as e:
            await self.refused(msg, e)

    async def new_order(self, msg: Message) -> None:
        assert self.who is not None
        await self.gw.place(self.who, order_params(msg), f"fix-{self.key_id}-{msg.seq}")

    async def new_order_list(self, msg: Message) -> None:
        for entry in entries(msg, 73):
            try:
                await self.new_order(entry)
            except ApiError as e:
                await self.refused(entry, e)

    async def amend(self, msg: Message) -> None:
        assert self.who is not None
        order_id = await self.order_id(msg)
        request = f"fix-{self.key_id}-{msg.seq}"
        self.amending[order_id] = (msg.msg_type, msg.require(11), msg.get(41) or "")
        try:
            if msg.msg_type == "F":
                await self.gw.cancel(self.who, {"order_id": order_id}, request)
            else:
                params = {"order_id": order_id, "quantity": msg.get(38)}
                if msg.get(44) is not None:
                    params["price"] = msg.get(44)
                await self.gw.replace(self.who, params, request)
        except ApiError:
            self.amending.pop(order_id, None)
            raise

    async def order_id(self, msg: Message) -> str:
        """The order an F, G or H names: OrderID (37) if given, else by OrigClOrdID (41) / ClOrdID."""
        assert self.who is not None
        if msg.get(37):
            return msg.require(37)
        clord = msg.get(41) if msg.msg_type in ("F", "G") else msg.get(11)
        for order_id, current in self.cl_ord_ids.items():
            if current == clord:
                return order_id
        doc = await self.gw.orders.find_one({"_id": f"{self.who.account_id}|{clord}"})
        if doc is None:
            raise ApiError(40401, f"no order with ClOrdID {clord}", {"field": "OrigClOrdID"}, status=404)
        return str(doc["order_id"])

    async def status(self, msg: Message) -> None:
        assert self.who is not None
        order_id = await self.order_id(msg)
        got = await self.gw.get(self.who, {"order_id": order_id})
        state = got.get("state") or {}
        body: list[tuple[int, object]] = [
            (37, order_id), (11, msg.require(11)), (17, f"status-{order_id}-{msg.seq}"), (150, "I"),
            (39, STATUS.get(state.get("status", "NEW"), "0")), (55, got["symbol"]), (54, msg.require(54)),
            (151, state.get("remaining_quantity", "0")), (14, state.get("filled_quantity", "0")),
            (6, state.get("average_price") or "0"),
        ]
        if msg.get(790):
            body.append((790, msg.require(790)))
        await self.send("8", body)

    async def refused(self, msg: Message, e: ApiError) -> None:
        text = f"{e.code} {e.message}"[:200]
        if msg.msg_type in ("F", "G"):
            await self.send("9", [
                (37, msg.get(37) or "NONE"), (11, msg.get(11) or ""), (41, msg.get(41) or ""), (39, "8"),
                (434, "1" if msg.msg_type == "F" else "2"), (102, "1" if e.code == 40401 else "99"),
                (58, text),
            ])
        elif msg.msg_type in ("D", "E") and msg.get(11):
            await self.send("8", [
                (37, "NONE"), (11, msg.require(11)), (17, f"rej-{self.key_id}-{msg.seq}-{msg.get(11)}"),
                (150, "8"), (39, "8"), (55, msg.get(55) or "?"),
                (54, msg.get(54) if msg.get(54) in SIDES else "1"),
                (151, "0"), (14, "0"), (6, "0"), (103, "99"), (58, text),
            ])
        else:
            await self.business_reject(msg, 0, text)

    async def business_reject(self, msg: Message, reason: int, text: str) -> None:
        await self.send("j", [(45, msg.seq), (372, msg.msg_type), (380, reason), (58, text[:200])])

    # -- out -----------------------------------------------------------------------------

    async def on_report(self, rep: r.ExecutionReport) -> None:
        pending = self.amending.get(rep.order_id)
        known = self.cl_ord_ids.get(rep.order_id, rep.client_order_id)
        exec_type = exec_type_of(rep)
        if refusal(rep):
            if pending is None:
                return  # a cancel or replace sent by another protocol: its answer went there
            kind, request, named = self.amending.pop(rep.order_id)
            await self.send("9", [
                (37, rep.order_id), (11, request), (41, named or known),
                (39, STATUS.get(rep.status.value, "0")), (434, "1" if kind == "F" else "2"),
                (102, "0" if rep.reason == "TOO_LATE_TO_CANCEL" else "99"), (58, rep.reason or ""),
            ])
            return
        orig: str | None = None
        if pending is not None and exec_type in ("4", "5"):
            _, request, named = self.amending.pop(rep.order_id)
            orig = named or known
            self.cl_ord_ids[rep.order_id] = known = request
        await self.send("8", report_body(rep, exec_type, known, orig))


def entries(msg: Message, count_tag: int) -> list[Message]:
    """The entries of a repeating group as messages of their own (the group's first field starts each)."""
    pairs = msg.pairs
    at = next((i for i, (t, _) in enumerate(pairs) if t == count_tag), None)
    if at is None:
        return []
    rest = [p for p in pairs[at + 1:] if p[0] != 10]
    if not rest:
        return []
    delimiter = rest[0][0]
    out: list[list[tuple[int, bytes]]] = []
    for tag, value in rest:
        if tag == delimiter:
            out.append([])
        out[-1].append((tag, value))
    return [Message([(35, b"D"), (34, str(msg.seq).encode()), *e]) for e in out]


class FixEntry:
    """The acceptor: sessions by API key, the TCP listener and the WebSocket transport."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        settings = gw.settings
        self.comp_id = settings.fix_comp_id
        self.folder = Path(settings.data_dir, "gateway", "fix")
        self.sessions: dict[str, Session] = {}
        self.acceptor = Acceptor(self.lookup)
        self.server: asyncio.Server | None = None

    async def lookup(self, ours: str, theirs: str) -> Session | None:
        if ours != self.comp_id or not KEY_ID.match(theirs) or await self.gw.keys.lookup(theirs) is None:
            return None
        session = self.sessions.get(theirs)
        if session is None:
            config = SessionConfig(self.comp_id, theirs, self.gw.settings.fix_heartbeat_s)
            session = Session(config, SessionStore(self.folder / theirs), FixClient(self.gw, theirs),
                              initiator=False)
            self.sessions[theirs] = session
        return session

    async def start(self) -> None:
        port = self.gw.settings.fix_port
        if port:
            self.server = await asyncio.start_server(self.acceptor.serve, self.gw.settings.web_host, port)
            log.info("fix order entry listening", extra={"port": port})

    async def stop(self) -> None:
        for session in self.sessions.values():
            await session.logout("gateway shutting down")
        if self.server is not None:
            self.server.close()

    def health(self) -> dict[str, Any]:
        return {k: {"logged_on": s.logged_on, "next_out": s.store.next_sender, "next_in": s.store.next_target}
                for k, s in self.sessions.items()}

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        """FIX 4.4 in JSON over WebSocket: the same session as over TCP, frame by frame."""
        ws = web.WebSocketResponse(heartbeat=self.gw.settings.ws_heartbeat_s)
        await ws.prepare(request)
        reader = asyncio.StreamReader()
        writer = JsonWriter(ws)
        serving = asyncio.get_running_loop().create_task(self.acceptor.serve(reader, writer))  # type: ignore[arg-type]
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    break
                try:
                    reader.feed_data(from_json(frame.data))
                except (ValueError, KeyError, TypeError) as exc:
                    await ws.send_json({"error": f"not a FIX JSON message: {exc}"})
        finally:
            reader.feed_eof()
            await serving
        return ws


class JsonWriter:
    """What the session layer writes (tag=value), sent as FIX JSON frames."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.parser = new_parser()
        self.sending: set[asyncio.Task[None]] = set()

    def write(self, raw: bytes) -> None:
        self.parser.append_buffer(raw)
        while (m := self.parser.get_message()) is not None:
            task = asyncio.get_running_loop().create_task(self.ws.send_str(to_json(m)))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)

    async def drain(self) -> None:
        if self.sending:
            await asyncio.gather(*self.sending, return_exceptions=True)

    def is_closing(self) -> bool:
        return self.ws.closed

    def close(self) -> None:
        asyncio.get_running_loop().create_task(self.ws.close())


HEADER_NAMES = {"BeginString", "BodyLength", "MsgType", "SenderCompID", "TargetCompID", "MsgSeqNum",
                "SendingTime", "PossDupFlag", "OrigSendingTime", "PossResend"}


def to_json(m: simplefix.FixMessage) -> str:
    """A FIX message in the FIX Trading Community's JSON encoding (flat: no groups go out)."""
    d = Dictionary.fix44()
    parts: dict[str, dict[str, str]] = {"Header": {}, "Body": {}, "Trailer": {}}
    for tag, value in m.pairs:
        name = d.field_name(int(tag)) or str(int(tag))
        part = "Trailer" if int(tag) == 10 else "Header" if name in HEADER_NAMES else "Body"
        if int(tag) not in (9, 10):
            parts[part][name] = value.decode("latin-1")
    return json.dumps(parts)


def from_json(text: str) -> bytes:
    """A FIX JSON message as tag=value bytes (BodyLength and CheckSum worked out)."""
    doc = json.loads(text)
    d = Dictionary.fix44()
    header, body = dict(doc["Header"]), doc.get("Body", {})

    def pairs(fields: dict[str, Any]) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for name, value in fields.items():
            tag = d.tag_of(name)
            if tag is None:
                raise ValueError(f"unknown field {name}")
            if isinstance(value, list):
                out.append((tag, str(len(value))))
                for entry in value:
                    out += pairs(entry)
            else:
                out.append((tag, str(value)))
        return out

    m = simplefix.FixMessage()
    m.append_pair(8, header.pop("BeginString", "FIX.4.4"), header=True)
    m.append_pair(35, header.pop("MsgType"), header=True)
    for tag, value in pairs(header):
        m.append_pair(tag, value, header=True)
    for tag, value in pairs(body):
        m.append_pair(tag, value)
    raw: bytes = m.encode()
    return raw


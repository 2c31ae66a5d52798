"""An external venue over FIX 4.4: the router's initiator session to a FIX acceptor.

Orders go out as NewOrderSingle (ClOrdID = our order id), cancels as
OrderCancelRequest (ClOrdID `<order id>:c<n>`), replaces as
OrderCancelReplaceRequest (ClOrdID `<order id>:r<n>`; OrigClOrdID is the order's
ClOrdID of the moment: after a replace, the replace's), status questions as
OrderStatusRequest. What comes back becomes venue events:

    ExecutionReport  ExecType 0 New -> ACCEPTED, 1/2/F with LastQty -> FILLED (fill
                     id `<venue>-<order id>-<ExecID>`), 5 Replaced -> REPLACED,
                     4 Canceled / C Expired -> CANCELED, 8 Rejected -> REJECTED
    OrderCancelReject            -> the cancel or replace fails (CxlRejReason -> code)
    BusinessMessageReject, Reject -> the call it refers to (RefSeqNum) fails: a
                     refused order is REJECTED, a refused cancel tells the client why

The session layer (common/fix) delivers every message of the venue once and in
order across reconnects and restarts (ResendRequest/PossDupFlag), so no fill is
lost; each ExecutionReport is kept in a journal by (order, ExecID) before it is
handed on, so a resent one is never a second fill, and `status` answers from
the journal what the router missed while it was down. Orders this adapter sent
are read back from the session store itself: an order never sent is one the
venue cannot have, and `status` says UNKNOWN_ORDER for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr

from orderstream.common.fix.session import (
    Initiator,
    Message,
    NotLoggedOn,
    Session,
    SessionConfig,
    field_text,
    parse,
    utc_now,
)
from orderstream.common.fix.store import SessionStore
from orderstream.router.venue import VenueError, VenueEvent, VenueOrder

log = logging.getLogger(__name__)

SIDES = {"BUY": "1", "SELL": "2"}
TIFS = {"GTC": "1", "IOC": "3", "FOK": "4", "DAY": "0", "GTD": "6"}
ORD_REJ = {  # OrdRejReason (103) -> venue code (router/venue.py maps it to our reason)
    "1": "UNKNOWN_SYMBOL", "2": "EXCHANGE_CLOSED", "3": "ORDER_EXCEEDS_LIMIT", "5": "UNKNOWN_ORDER",
    "6": "DUPLICATE_ORDER", "11": "UNSUPPORTED_ORDER", "13": "INVALID_QUANTITY",
}
CXL_REJ = {"0": "TOO_LATE_TO_CANCEL", "1": "UNKNOWN_ORDER", "3": "CANCEL_PENDING"}
FILLS = ("1", "2", "F")
DONE = ("REJECTED", "CANCELED")
JOURNAL_KEEP_S = 24 * 3600  # finished orders older than this are dropped from the journal at start


class FixVenueConfig(BaseModel):
    host: str = Field("127.0.0.1", description="Host of the venue's FIX acceptor.")
    port: int = Field(9880, ge=1, le=65535)
    sender_comp_id: str = Field("ORDERSTREAM", description="Our SenderCompID (49).")
    target_comp_id: str = Field("EXEC", description="The venue's CompID (56).")
    username: str | None = Field(None, description="Username (553) of the Logon, if the venue asks one.")
    password: SecretStr | None = Field(None, description="Password (554) of the Logon; never logged.")
    heartbeat_s: int = Field(30, ge=1, description="HeartBtInt (108) asked at Logon.")
    reconnect_s: float = Field(1.0, gt=0, description="First reconnect delay; doubles per failed try.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay.")
    resend_max_age_s: float = Field(
        60.0, gt=0, description="An order older than this is not resent after a reconnect: it is gap-filled "
                                "and rejected VENUE_NOT_DELIVERED instead of reaching the venue late.")
    reset_on_logon: bool = Field(
        False, description="Log on with ResetSeqNumFlag (141=Y): both sides start again at 1 on every "
                           "logon. Only to recover from a lost store: what was in flight is not resent.")
    status_timeout_s: float = Field(2.0, gt=0, description="Wait for an OrderStatusRequest's answer.")
    store: str | None = Field(None, description="Folder of the session store and journal; "
                                                "default <data_dir>/router/fix/<venue>.")


class FixVenue:
    supports_replace = True

    def __init__(self, name: str, config: FixVenueConfig, folder: Path) -> None:
        self.name = name
        self.config = config
        self.store = SessionStore(folder / "session")
        session_config = SessionConfig(
            config.sender_comp_id, config.target_comp_id, config.heartbeat_s, config.username,
            config.password.get_secret_value() if config.password else None,
            reset_on_logon=config.reset_on_logon, resend_max_age_s=config.resend_max_age_s,
        )
        self.session = Session(session_config, self.store, self, initiator=True)
        self.initiator = Initiator(self.session, config.host, config.port, config.reconnect_s,
                                   config.reconnect_max_s)
        self.queue: asyncio.Queue[VenueEvent] = asyncio.Queue()
        self.events_of: dict[str, list[VenueEvent]] = defaultdict(list)
        self.exec_ids: set[tuple[str, str]] = set()
        self.sent: dict[str, Message] = {}  # our order id -> the NewOrderSingle
        self.current: dict[str, tuple[str, Decimal]] = {}  # order id -> (ClOrdID, OrderQty) after replaces
        self.by_seq: dict[int, str] = {}  # our MsgSeqNum -> the ClOrdID/request id it carried
        self.requests: dict[str, int] = defaultdict(int)  # cancels and status questions per order
        self.waiting: dict[str, list[asyncio.Future[Message]]] = defaultdict(list)
        self.status_supported = True
        self._task: asyncio.Task[None] | None = None
        for seq, raw in self.store.all_sent():
            self._remember(seq, parse(raw))
        self.journal = folder / "events.jsonl"
        self._load_journal()
        self._journal = self.journal.open("a")

    # -- what this adapter sent and heard, across restarts -------------------------------

    def _remember(self, seq: int, m: Message) -> None:
        clord = m.get(11) or ""
        if m.msg_type == "D":
            self.sent[clord] = m
            self.by_seq[seq] = clord
        elif m.msg_type in ("F", "G", "H"):
            key = m.get(790) or clord if m.msg_type == "H" else clord
            self.by_seq[seq] = key
            self.requests[_order_of(key)] += 1

    def _load_journal(self) -> None:
        if not self.journal.exists():
            return
        entries = []
        for line in self.journal.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue  # the last line, cut off by a kill
        cutoff = time.time_ns() - JOURNAL_KEEP_S * 10**9
        done_before = {e["e"]["order_id"] for e in entries
                       if e["e"]["ts"] < cutoff and (e["e"]["kind"] in DONE or e["e"]["leaves"] == "0")}
        kept = [e for e in entries if e["e"]["order_id"] not in done_before]
        for e in kept:
            if e["e"]["kind"] == "REPLACED":
                self.current[e["e"]["order_id"]] = (e["c"], Decimal(e["e"]["quantity"]))
            fields = e["e"]
            for k in ("quantity", "price", "leaves"):
                fields[k] = None if fields[k] is None else Decimal(fields[k])
            ev = VenueEvent(**fields)
            self.events_of[ev.order_id].append(ev)
            self.exec_ids.add((ev.order_id, e["x"]))
        if len(kept) < len(entries):
            tmp = self.journal.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(e, default=str) + "\n" for e in kept))
            tmp.replace(self.journal)

    def _event(self, order_id: str, exec_id: str, kind: str, clord: str = "", **fields: Any) -> None:
        if (order_id, exec_id) in self.exec_ids:
            return  # resent (PossDupFlag) or seen before a restart
        ev = VenueEvent(order_id, len(self.events_of[order_id]) + 1, kind, time.time_ns(), **fields)
        if kind == "REPLACED":
            assert ev.quantity is not None
            self.current[order_id] = (clord, ev.quantity)
        self._journal.write(json.dumps({"x": exec_id, "c": clord, "e": asdict(ev)}, default=str) + "\n")
        self._journal.flush()
        self.exec_ids.add((order_id, exec_id))
        self.events_of[order_id].append(ev)
        self.queue.put_nowait(ev)

    # -- the session's application --------------------------------------------------------

    async def on_logon(self, session: Session) -> None:
        log.info("fix venue logged on", extra={"venue": self.name, "logons": session.logons})

    async def on_logout(self, session: Session) -> None:
        log.warning("fix venue logged out", extra={"venue": self.name})

    async def authenticate(self, session: Session, logon: Message) -> str | None:
        return None  # an initiator is not asked to log anyone on

    def on_not_resent(self, session: Session, msg: Message) -> None:
        clord = msg.get(11) or ""
        if msg.msg_type == "D" and clord in self.sent and not self.events_of.get(clord):
            self._event(clord, f"N{msg.seq}", "REJECTED", code="NOT_DELIVERED",
                        message=f"{self.name}: the order did not reach the venue in time")
            self._answer(clord, msg)

    async def on_message(self, session: Session, msg: Message) -> None:
        t = msg.msg_type
        if t == "8":
            self._on_report(msg)
        elif t == "9":
            self._answer(msg.get(11) or "", msg)
        elif t in ("j", "3"):
            key = self.by_seq.get(int(msg.get(45) or 0))
            if key is None:
                log.warning("venue refused a message this adapter does not know",
                            extra={"venue": self.name, "text": msg.get(58)})
                return
            if key in self.sent:  # the order itself was refused
                text = msg.get(58) or "refused by the venue"
                self._event(key, f"R{msg.get(45)}", "REJECTED",
                            code="BUSINESS_REJECT" if t == "j" else "FIX_REJECT",
                            message=f"{self.name}: {text}")
            self._answer(key, msg)
        else:
            log.warning("unexpected FIX message from the venue",
                        extra={"venue": self.name, "msg_type": t})

    def _on_report(self, msg: Message) -> None:
        exec_type = msg.get(150) or ""
        if exec_type == "I":  # the answer to an OrderStatusRequest
            self._answer(msg.get(790) or msg.get(11) or "", msg)
            return
        clord = msg.get(11) or ""
        order_id = _order_of(msg.get(41) or clord) if ":" in clord else clord
        if order_id not in self.sent:
            log.warning("execution report for an order this adapter never sent",
                        extra={"venue": self.name, "cl_ord_id": clord})
            return
        exec_id = msg.get(17) or ""
        leaves = msg.decimal(151)
        last_qty = msg.decimal(32)
        if exec_type in FILLS and last_qty:
            self._event(order_id, exec_id, "FILLED", fill_id=f"{self.name}-{order_id}-{exec_id}",
                        quantity=msg.decimal(32), price=msg.decimal(31), leaves=leaves)
        elif exec_type == "5":
            self._event(order_id, exec_id, "REPLACED", clord=clord, quantity=msg.decimal(38),
                        price=msg.decimal(44), leaves=leaves)
        elif exec_type in ("4", "C"):
            quantity = msg.decimal(38) or self._clord_and_qty(order_id)[1]
            cum = msg.decimal(14) or Decimal(0)
            self._event(order_id, exec_id, "CANCELED", quantity=quantity - cum, leaves=Decimal(0),
                        code="EXPIRED" if exec_type == "C" else None)
        elif exec_type == "0" or (exec_type in FILLS and msg.get(39) == "0"):
            # QuickFIX/J's example Executor reports New with ExecType 2 and OrdStatus 0, no LastQty
            self._event(order_id, exec_id, "ACCEPTED", leaves=leaves)
        elif exec_type == "8":
            self._event(order_id, exec_id, "REJECTED", code=ORD_REJ.get(msg.get(103) or "", "VENUE_REJECTED"),
                        message=f"{self.name}: {msg.get(58) or 'order rejected'}")
        else:
            log.info("execution report not mapped", extra={"venue": self.name, "exec_type": exec_type})
        self._answer(clord, msg)
        if clord != order_id:
            self._answer(order_id, msg)

    def _answer(self, key: str, msg: Message) -> None:
        for fut in self.waiting.pop(key, []):
            if not fut.done():
                fut.set_result(msg)

    async def _ask(self, key: str, msg_type: str, body: list[tuple[int, object]],
                   timeout_s: float | None = None) -> Message:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[key].append(fut)
        try:
            seq = await self.session.send(msg_type, body)
        except NotLoggedOn as exc:
            self.waiting[key].remove(fut)
            raise VenueError("UNAVAILABLE", str(exc), transient=True, unsent=True) from None
        self.by_seq[seq] = key
        if msg_type == "D":
            # what the order's later cancels and replaces need, from the body just sent (no re-read)
            self.sent[key] = Message([(35, b"D"), *((t, field_text(v).encode()) for t, v in body)])
        return await (asyncio.wait_for(fut, timeout_s) if timeout_s else fut)

    async def _wait(self, key: str) -> Message:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiting[key].append(fut)
        return await fut

    # -- the adapter ----------------------------------------------------------------------

    async def place(self, order: VenueOrder) -> None:
        if order.order_id in self.sent:  # a retry: the session delivers the first one
            if not self.events_of.get(order.order_id):
                await self._wait(order.order_id)
            return
        body: list[tuple[int, object]] = [
            (11, order.order_id), (21, "1"), (55, order.symbol), (54, SIDES[order.side]),
            (60, utc_now()), (38, order.quantity), (40, "1" if order.price is None else "2"),
        ]
        if order.price is not None:
            body.append((44, order.price))
        body.append((59, TIFS.get(order.time_in_force, "1")))
        await self._ask(order.order_id, "D", body)

    def _clord_and_qty(self, order_id: str) -> tuple[str, Decimal]:
        return self.current.get(order_id) or (order_id, self.sent[order_id].decimal(38) or Decimal(0))

    def _sent(self, order_id: str) -> Message:
        sent = self.sent.get(order_id)
        if sent is None:
            raise VenueError("UNKNOWN_ORDER", f"{self.name} never received order {order_id}", transient=False)
        return sent

    async def cancel(self, order_id: str) -> None:
        sent = self._sent(order_id)
        clord, quantity = self._clord_and_qty(order_id)
        self.requests[order_id] += 1
        cancel_id = f"{order_id}:c{self.requests[order_id]}"
        answer = await self._ask(cancel_id, "F", [
            (41, clord), (11, cancel_id), (55, sent.require(55)), (54, sent.require(54)),
            (60, utc_now()), (38, quantity),
        ])
        self._refused("cancel", answer)

    async def replace(self, order_id: str, quantity: Decimal | None, price: Decimal | None) -> None:
        sent = self._sent(order_id)
        clord, current = self._clord_and_qty(order_id)
        self.requests[order_id] += 1
        replace_id = f"{order_id}:r{self.requests[order_id]}"
        body: list[tuple[int, object]] = [
            (41, clord), (11, replace_id), (21, "1"), (55, sent.require(55)), (54, sent.require(54)),
            (60, utc_now()), (38, quantity if quantity is not None else current), (40, sent.require(40)),
        ]
        if sent.get(40) == "2":
            body.append((44, price if price is not None else self._price(order_id)))
        self._refused("replace", await self._ask(replace_id, "G", body))

    def _price(self, order_id: str) -> str:
        replaced = [e for e in self.events_of.get(order_id, []) if e.kind == "REPLACED" and e.price]
        return format(replaced[-1].price, "f") if replaced else self.sent[order_id].require(44)

    def _refused(self, what: str, answer: Message) -> None:
        """Nothing when the venue carried out the cancel or replace (its report is an event);
        else the VenueError that tells the client why not."""
        t = answer.msg_type
        if t == "8":
            return
        text = answer.get(58) or "no reason given"
        upper = what.upper()
        if t == "9":
            raise VenueError(CXL_REJ.get(answer.get(102) or "", f"{upper}_REJECTED"),
                             f"{self.name} refused the {what}: {text}", transient=False)
        if t == "j":
            raise VenueError(f"{upper}_UNSUPPORTED" if answer.get(380) == "3" else f"{upper}_REJECTED",
                             f"{self.name} refused the {what}: {text}", transient=False)
        raise VenueError("FIX_REJECT", f"{self.name} rejected the {what} message: {text}", transient=False)

    async def status(self, order_id: str) -> list[VenueEvent]:
        sent = self._sent(order_id)
        if self.status_supported and self.session.logged_on:
            self.requests[order_id] += 1
            request_id = f"{order_id}:s{self.requests[order_id]}"
            try:
                answer = await self._ask(request_id, "H", [
                    (790, request_id), (11, self._clord_and_qty(order_id)[0]), (55, sent.require(55)),
                    (54, sent.require(54)),
                ], self.config.status_timeout_s)
            except TimeoutError:
                answer = None
            if answer is not None and answer.msg_type == "j" and answer.get(380) == "3":
                self.status_supported = False
                log.info("venue does not answer OrderStatusRequest; relying on the session's resends",
                         extra={"venue": self.name})
            elif (answer is not None and answer.msg_type == "8" and answer.get(103) == "5"
                  and not self.events_of.get(order_id)):
                raise VenueError("UNKNOWN_ORDER", f"{self.name} does not know order {order_id}",
                                 transient=False)
        return list(self.events_of.get(order_id, []))

    async def events(self) -> AsyncIterator[VenueEvent]:
        while True:
            yield await self.queue.get()

    def reconnects(self) -> int:
        return max(0, self.session.logons - 1)

    def resume(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.initiator.run())

    def health(self) -> dict[str, object]:
        return {
            "logged_on": self.session.logged_on,
            "logons": self.session.logons,
            "next_out": self.store.next_sender,
            "next_in": self.store.next_target,
            "rejects_sent": self.session.rejects_sent,
        }


def _order_of(cl_ord_id: str) -> str:
    """Our order id in a ClOrdID of a cancel (`<id>:c<n>`) or status question (`<id>:s<n>`)."""
    return cl_ord_id.rsplit(":", 1)[0] if ":" in cl_ord_id else cl_ord_id

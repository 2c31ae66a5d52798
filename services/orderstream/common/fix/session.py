"""One FIX 4.4 session layer for both ends of a FIX link.

The router's FIX venue adapter runs it as an initiator (it dials the venue);
FIX order entry runs it as an acceptor (clients dial the gateway). Either way a
`Session` is one pair of CompIDs with its `SessionStore`, and one connection at
a time runs through `Session.run`:

- Logon (credentials: Username 553 / Password 554, checked by the acceptor's
  application), Heartbeat and TestRequest on the negotiated interval, Logout;
- sequence numbers kept on disk across reconnects and restarts; a gap in what
  arrives is asked again with ResendRequest, and what is resent with
  PossDupFlag is applied once; a ResendRequest from the other side is answered
  from the kept messages, with SequenceReset-GapFill over session messages;
- every message sent or received is checked against the FIX 4.4 data
  dictionary (`dictionary.py`): a received message that breaks it gets a
  session Reject (35=3) naming the field; one we would send that breaks it is a
  programming error and raises.

The text codec is simplefix; framing (BodyLength, CheckSum) is checked here,
and a garbled message is ignored as the FIX specification asks. The password
never reaches a log: `redacted` masks it in every message that is logged.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import simplefix

from orderstream.common.fix.dictionary import Dictionary
from orderstream.common.fix.store import SessionStore

log = logging.getLogger(__name__)

BEGIN_STRING = "FIX.4.4"
HEADER_TAGS = frozenset({8, 9, 35, 49, 56, 34, 52, 43, 97, 122, 115, 128, 50, 57})
ADMIN_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})
_PASSWORD = re.compile(rb"(\x01(?:554|925)=)[^\x01]*")


def redacted(raw: bytes) -> str:
    """A message for a log: the SOH shown as |, passwords masked."""
    return _PASSWORD.sub(rb"\1***", raw).replace(b"\x01", b"|").decode("latin-1")


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}"


class Message:
    """A received (or kept) message: its fields in wire order, read as text."""

    __slots__ = ("_first", "pairs", "raw")

    def __init__(self, pairs: Sequence[tuple[int, bytes]], raw: bytes = b"") -> None:
        self.pairs = list(pairs)
        self.raw = raw
        self._first: dict[int, str] = {}
        for tag, value in reversed(self.pairs):
            self._first[tag] = value.decode("latin-1")

    def get(self, tag: int) -> str | None:
        return self._first.get(tag)

    def require(self, tag: int) -> str:
        value = self._first.get(tag)
        if value is None:
            raise KeyError(tag)
        return value

    def decimal(self, tag: int) -> Decimal | None:
        value = self._first.get(tag)
        return None if value is None else Decimal(value)

    @property
    def msg_type(self) -> str:
        return self._first.get(35, "")

    @property
    def seq(self) -> int:
        value = self._first.get(34, "")
        return int(value) if value.isdigit() else 0

    @property
    def poss_dup(self) -> bool:
        return self._first.get(43) == "Y"

    def __repr__(self) -> str:
        return f"Message({redacted(self.raw) if self.raw else self.pairs!r})"


def encode(begin: str, msg_type: str, header: Iterable[tuple[int, object]],
           body: Iterable[tuple[int, object]]) -> bytes:
    """The wire form, with BodyLength and CheckSum worked out (simplefix)."""
    m = simplefix.FixMessage()
    m.append_pair(8, begin, header=True)
    m.append_pair(35, msg_type, header=True)
    for tag, value in header:
        m.append_pair(tag, field_text(value), header=True)
    for tag, value in body:
        m.append_pair(tag, field_text(value))
    raw: bytes = m.encode()
    return raw


def field_text(value: object) -> str:
    """A field's value as it goes on the wire (a Decimal plainly, a bool as Y/N)."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # 30000.000 -> 30000, never an exponent
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def new_parser() -> simplefix.FixParser:
    """A parser that hands an empty value on (the dictionary check names it) instead of raising."""
    parser = simplefix.FixParser()
    parser.set_allow_empty_values(True)
    return parser


def parse(raw: bytes) -> Message:
    parser = new_parser()
    parser.append_buffer(raw)
    m = parser.get_message()
    if m is None:
        raise ValueError("not a whole FIX message")
    return Message([(int(t), v) for t, v in m.pairs], raw)


def framing_problem(pairs: Sequence[tuple[int, bytes]], raw: bytes) -> str | None:
    """Why a message is garbled (BeginString, BodyLength, CheckSum), or None."""
    if len(pairs) < 4 or pairs[0][0] != 8 or pairs[1][0] != 9 or pairs[-1][0] != 10:
        return "BeginString, BodyLength and CheckSum must open and close the message"
    head = b"8=" + pairs[0][1] + b"\x01" + b"9=" + pairs[1][1] + b"\x01"
    end = raw.rfind(b"\x0110=") + 1
    if not raw.startswith(head) or end <= 0:
        return "message does not start with 8= and 9="
    if not pairs[1][1].isdigit() or int(pairs[1][1]) != end - len(head):
        return f"BodyLength {pairs[1][1]!r} is not {end - len(head)}"
    if not pairs[-1][1].isdigit() or int(pairs[-1][1]) != sum(raw[:end]) % 256:
        return f"CheckSum {pairs[-1][1]!r} is not {sum(raw[:end]) % 256:03d}"
    return None


class Application(Protocol):
    """What runs over a session: the venue adapter or the order-entry gateway."""

    async def on_logon(self, session: Session) -> None: ...

    async def on_logout(self, session: Session) -> None: ...

    async def on_message(self, session: Session, msg: Message) -> None:
        """An application message (or a session Reject), once, in sequence order."""
        ...

    async def authenticate(self, session: Session, logon: Message) -> str | None:
        """Acceptor side: None to accept the Logon, else the reason it is refused."""
        ...

    def on_not_resent(self, session: Session, msg: Message) -> None:
        """A kept application message too old to resend was gap-filled: it never arrived."""
        ...


@dataclass(frozen=True)
class SessionConfig:
    sender_comp_id: str
    target_comp_id: str
    heartbeat_s: int = 30
    username: str | None = None
    password: str | None = None
    reset_on_logon: bool = False  # initiator: ask both sides to start again at 1
    resend_max_age_s: float | None = None  # older application messages are gap-filled, not resent
    logon_timeout_s: float = 10.0
    logout_timeout_s: float = 2.0


class NotLoggedOn(Exception):
    """An application message was sent while the session is not logged on."""


class Session:
    _test_ids = itertools.count(1)

    def __init__(self, config: SessionConfig, store: SessionStore, app: Application,
                 initiator: bool, dictionary: Dictionary | None = None) -> None:
        self.config = config
        self.store = store
        self.app = app
        self.initiator = initiator
        self.dictionary = dictionary or Dictionary.fix44()
        self.heartbeat_s = config.heartbeat_s
        self.logged_on = False
        self.logons = 0
        self.connected = False
        self.rejects_sent = 0
        self.garbled = 0
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False
        self._logout_sent = False
        self._logout_reason = ""
        self._resend_until = 0  # a ResendRequest is out for messages up to this number
        self._last_sent = self._last_received = 0.0
        self._test_request: tuple[str, float] | None = None
        self.logged_on_event = asyncio.Event()
        self._ended = asyncio.Event()  # the connection under `run` is over

    @property
    def name(self) -> str:
        return f"{self.config.sender_comp_id}->{self.config.target_comp_id}"

    # -- sending ----------------------------------------------------------------------

    def _header(self, seq: int, sending_time: str | None = None) -> list[tuple[int, object]]:
        return [(49, self.config.sender_comp_id), (56, self.config.target_comp_id), (34, seq),
                (52, sending_time or utc_now())]

    def _write(self, raw: bytes) -> None:
        if self._writer is None or self._writer.is_closing():
            return  # kept; the other side asks for it again after the reconnect
        self._writer.write(raw)
        self._last_sent = time.monotonic()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("fix out", extra={"session": self.name, "fix": redacted(raw)})

    def _send(self, msg_type: str, body: Sequence[tuple[int, object]]) -> int:
        seq = self.store.next_sender
        raw = encode(BEGIN_STRING, msg_type, self._header(seq), body)
        problems = self.dictionary.check(parse(raw).pairs)
        if problems:
            raise ValueError(f"outgoing {msg_type} breaks the FIX 4.4 dictionary: "
                             + "; ".join(p.text for p in problems))
        self.store.keep(seq, raw)
        if self.logged_on or msg_type in ADMIN_TYPES:  # else kept for the resend after the Logon
            self._write(raw)
        return seq

    async def send(self, msg_type: str, body: Sequence[tuple[int, object]],
                   keep_if_down: bool = False) -> int:
        """Send an application message; its sequence number. Kept before it is written, so a
        connection that drops under it is made good by the other side's ResendRequest. While
        the session is down it raises NotLoggedOn, or with `keep_if_down` keeps the message for
        the other side to ask for after its next Logon (what an acceptor owes its client)."""
        if not self.logged_on and not keep_if_down:
            raise NotLoggedOn(f"FIX session {self.name} is not logged on")
        seq = self._send(msg_type, body)
        if self._writer is not None:
            with contextlib.suppress(ConnectionError):  # kept: resent on request after the reconnect
                await self._writer.drain()
        return seq

    def _reject(self, msg: Message, reason: int, text: str, tag: int | None = None) -> None:
        self.rejects_sent += 1
        log.warning("fix message rejected",
                    extra={"session": self.name, "seq": msg.seq, "reason": reason, "text": text})
        body: list[tuple[int, object]] = [(45, msg.seq)]
        if tag is not None:
            body.append((371, tag))
        if msg.msg_type:
            body.append((372, msg.msg_type))
        body += [(373, reason), (58, text[:200])]
        self._send("3", body)

    def _logout(self, text: str = "") -> None:
        self._logout_sent = True
        self._send("5", [(58, text)] if text else [])

    # -- a connection -------------------------------------------------------------------

    async def run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  first: Message | None = None, parser: simplefix.FixParser | None = None) -> str:
        """Serve one connection until it ends; why it ended. An acceptor passes the Logon it
        read (`first`) and the parser holding whatever came after it."""
        self._writer = writer
        self.connected = True
        self._ended.clear()
        self._closing = self._logout_sent = False
        self._logout_reason = ""
        self._resend_until = 0
        self._test_request = None
        self._last_sent = self._last_received = started = time.monotonic()
        parser = parser or new_parser()
        timer = asyncio.get_running_loop().create_task(self._timer(started))
        try:
            if self.initiator:
                if self.config.reset_on_logon:
                    self.store.reset()
                body: list[tuple[int, object]] = [(98, 0), (108, self.heartbeat_s)]
                if self.config.reset_on_logon:
                    body.append((141, "Y"))
                if self.config.username:
                    body.append((553, self.config.username))
                if self.config.password:
                    body.append((554, self.config.password))
                self._send("A", body)
            if first is not None:
                await self._handle(first)
                await self._drain(parser)
            while not self._closing:
                data = await reader.read(65536)
                if not data:
                    self._logout_reason = self._logout_reason or "connection closed by the other side"
                    break
                self._last_received = time.monotonic()
                parser.append_buffer(data)
                await self._drain(parser)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            self._logout_reason = f"connection lost: {exc}"
        finally:
            timer.cancel()
            self.connected = False
            self._ended.set()
            self._writer = None
            writer.close()
            was = self.logged_on
            self.logged_on = False
            self.logged_on_event.clear()
            if was:
                await self.app.on_logout(self)
        log.info("fix session ended", extra={"session": self.name, "reason": self._logout_reason})
        return self._logout_reason

    async def _drain(self, parser: simplefix.FixParser) -> None:
        while not self._closing:
            msg = self._next(parser)
            if msg is None:
                return
            await self._handle(msg)

    def _next(self, parser: simplefix.FixParser) -> Message | None:
        while True:
            try:
                m = parser.get_message()
            except Exception as exc:
                self.garbled += 1
                log.warning("garbled FIX data dropped", extra={"session": self.name, "error": str(exc)})
                parser.reset()
                return None
            if m is None:
                return None
            pairs = [(int(t), v) for t, v in m.pairs]
            raw = m.encode(raw=True)
            problem = framing_problem(pairs, raw)
            if problem is None:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("fix in", extra={"session": self.name, "fix": redacted(raw)})
                return Message(pairs, raw)
            self.garbled += 1
            log.warning("garbled FIX message ignored",
                        extra={"session": self.name, "error": problem, "fix": redacted(raw)})

    def close(self, reason: str) -> None:
        self._closing = True
        self._logout_reason = self._logout_reason or reason
        if self._writer is not None:
            self._writer.close()

    async def logout(self, text: str = "", wait: bool = True) -> None:
        """Log out and wait (briefly) for the other side's Logout before the connection closes."""
        if not self.logged_on or self._writer is None:
            return
        self._logout_reason = f"logged out: {text}" if text else "logged out"
        self._logout(text)
        if wait:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ended.wait(), self.config.logout_timeout_s)
        self.close(self._logout_reason)

    async def _timer(self, started: float) -> None:
        tick = min(1.0, self.heartbeat_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if not self.logged_on:
                if now - started > self.config.logon_timeout_s:
                    self.close("no Logon in time")
                    return
                continue
            if now - self._last_sent >= self.heartbeat_s:
                self._send("0", [])
            silent = now - self._last_received
            if self._test_request is None and silent >= self.heartbeat_s * 1.2:
                test_id = f"TEST-{next(self._test_ids)}"
                self._test_request = (test_id, now)
                self._send("1", [(112, test_id)])
            elif self._test_request is not None and now - self._test_request[1] >= self.heartbeat_s:
                log.warning("fix counterparty silent; disconnecting", extra={"session": self.name})
                self.close("no answer to TestRequest")
                return

    # -- receiving ----------------------------------------------------------------------

    async def _handle(self, msg: Message) -> None:
        self._test_request = None
        t = msg.msg_type
        if not self.logged_on and t == "5":  # our Logon refused
            self.close(f"Logout from the other side: {msg.get(58) or ''}".rstrip(": "))
            return
        if not self.logged_on and t != "A":
            log.warning("fix message before Logon; disconnecting",
                        extra={"session": self.name, "fix": redacted(msg.raw)})
            self.close("first message was not a Logon")
            return
        if msg.get(8) != BEGIN_STRING:
            self._logout(f"BeginString must be {BEGIN_STRING}")
            self.close("wrong BeginString")
            return
        if msg.get(49) != self.config.target_comp_id or msg.get(56) != self.config.sender_comp_id:
            if self.logged_on:
                self._reject(msg, 9, "CompID problem")
                self._logout("CompID problem")
            self.close("CompID problem")
            return
        problems = self.dictionary.check(msg.pairs)
        if t == "A":
            await self._on_logon(msg, problems)
            return
        expected = self.store.next_target
        seq = msg.seq
        if t == "4" and msg.get(123) != "Y":  # SequenceReset-Reset: numbers jump, whatever 34 says
            new = int(msg.get(36) or 0)
            if new < expected:
                self._reject(msg, 5, f"NewSeqNo {new} is below the expected {expected}", 36)
            else:
                self.store.set_next_target(new)
            return
        if t == "2" and not problems:  # answered even when out of order: both sides may have gaps
            self._resend(int(msg.require(7)), int(msg.require(16)))
        if seq > expected:
            self._ask_resend(expected, seq)
            return
        if seq < expected:
            if not msg.poss_dup:
                text = f"MsgSeqNum too low, expecting {expected} but received {seq}"
                self._logout(text)
                self.close(text)
            return
        if problems:
            first = problems[0]
            self._reject(msg, first.reason, first.text, first.tag)
            self.store.set_next_target(seq + 1)
            return
        if t == "4":  # GapFill
            self.store.set_next_target(max(int(msg.require(36)), seq + 1))
            return
        if t == "1":
            self.store.set_next_target(seq + 1)  # stored before the answer, as for a Logout
            self._send("0", [(112, msg.require(112))])
            return
        elif t == "5":
            # Stored before the answer: a process killed once the other side has the answer must not
            # expect this message again (it would ask for a resend the other side may never answer,
            # and drop what comes next: found by the gateway-restart test).
            self.store.set_next_target(seq + 1)
            if not self._logout_sent:
                self._logout()
            self.close(f"Logout from the other side: {msg.get(58) or ''}".rstrip(": "))
            return
        elif t not in ("0", "2"):
            await self.app.on_message(self, msg)
        self.store.set_next_target(seq + 1)

    async def _on_logon(self, msg: Message, problems: list) -> None:  # type: ignore[type-arg]
        if self.logged_on:
            self._reject(msg, 5, "already logged on")
            self.store.set_next_target(msg.seq + 1)
            return
        if problems:
            self._logout(problems[0].text)
            self.close(f"bad Logon: {problems[0].text}")
            return
        if not self.initiator:
            refusal = await self.app.authenticate(self, msg)
            if refusal is not None:
                log.warning("fix logon refused", extra={"session": self.name, "reason": refusal})
                self._logout(refusal)
                self.close(f"Logon refused: {refusal}")
                return
            self.heartbeat_s = int(msg.get(108) or self.config.heartbeat_s)
            reset = msg.get(141) == "Y"
            if reset:
                self.store.reset()
            self._send("A", [(98, 0), (108, self.heartbeat_s), *([(141, "Y")] if reset else [])])
        elif msg.get(141) == "Y" and not self.config.reset_on_logon:
            self.store.set_next_target(1)  # the venue started again at 1
        expected, seq = self.store.next_target, msg.seq
        if seq < expected:
            text = f"MsgSeqNum too low, expecting {expected} but received {seq}"
            self._logout(text)
            self.close(text)
            return
        self.logged_on = True
        self.logons += 1
        self.logged_on_event.set()
        log.info("fix session logged on",
                 extra={"session": self.name, "next_out": self.store.next_sender, "next_in": expected,
                        "their_seq": seq})
        if seq > expected:
            self._ask_resend(expected, seq)
        else:
            self.store.set_next_target(seq + 1)
        await self.app.on_logon(self)

    def _ask_resend(self, expected: int, seen: int) -> None:
        if self._resend_until >= expected:
            return  # already asked; what is missing comes with the answer
        self._resend_until = seen
        log.info("fix gap: asking for a resend",
                 extra={"session": self.name, "from": expected, "seen": seen})
        self._send("2", [(7, expected), (16, 0)])

    def _resend(self, begin: int, end: int) -> None:
        """Answer a ResendRequest from the kept messages: application messages again with
        PossDupFlag=Y, session messages (and anything not kept) covered by a GapFill."""
        last = self.store.next_sender - 1
        end = last if end == 0 or end > last else end
        log.info("fix resend", extra={"session": self.name, "from": begin, "to": end})
        gap: int | None = None
        for seq, raw in self.store.sent(begin, end):
            kept = parse(raw)
            if kept.msg_type in ADMIN_TYPES:
                continue
            if self._too_old(kept):
                log.warning("fix message too old to resend; gap-filled",
                            extra={"session": self.name, "seq": seq, "msg_type": kept.msg_type})
                self.app.on_not_resent(self, kept)
                continue
            if (gap if gap is not None else begin) < seq:
                self._gap_fill(gap if gap is not None else begin, seq)
            header = [(49, self.config.sender_comp_id), (56, self.config.target_comp_id), (34, seq),
                      (43, "Y"), (52, utc_now()), (122, kept.require(52))]
            body = [(t, v.decode("latin-1")) for t, v in kept.pairs if t not in HEADER_TAGS and t != 10]
            self._write(encode(BEGIN_STRING, kept.msg_type, header, body))
            gap = seq + 1
        start = gap if gap is not None else begin
        if start <= end:
            self._gap_fill(start, end + 1)

    def _too_old(self, kept: Message) -> bool:
        limit = self.config.resend_max_age_s
        if limit is None:
            return False
        stamp = kept.require(52)
        sent = calendar.timegm(time.strptime(stamp[:17], "%Y%m%d-%H:%M:%S")) + float("0" + stamp[17:])
        return time.time() - sent > limit

    def _gap_fill(self, at: int, new: int) -> None:
        now = utc_now()
        header = [(49, self.config.sender_comp_id), (56, self.config.target_comp_id), (34, at),
                  (43, "Y"), (52, now), (122, now)]
        self._write(encode(BEGIN_STRING, "4", header, [(123, "Y"), (36, new)]))


class Initiator:
    """Dial the counterparty and keep the session up: reconnect with backoff after a drop."""

    def __init__(self, session: Session, host: str, port: int, reconnect_s: float = 1.0,
                 reconnect_max_s: float = 30.0, connect_timeout_s: float = 5.0) -> None:
        self.session = session
        self.host, self.port = host, port
        self.reconnect_s, self.reconnect_max_s = reconnect_s, reconnect_max_s
        self.connect_timeout_s = connect_timeout_s
        self.connects = 0
        self._stopping = False

    async def run(self) -> None:
        delay = self.reconnect_s
        while not self._stopping:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                log.warning("fix venue unreachable; retrying",
                            extra={"session": self.session.name, "host": self.host, "port": self.port,
                                   "error": str(exc) or type(exc).__name__, "retry_s": delay})
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)
                continue
            self.connects += 1
            logons = self.session.logons
            reason = await self.session.run(reader, writer)
            if self._stopping:
                return
            if self.session.logons > logons:
                delay = self.reconnect_s  # it was up: come back at once
            log.warning("fix session down; reconnecting",
                        extra={"session": self.session.name, "reason": reason, "retry_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def stop(self) -> None:
        self._stopping = True
        await self.session.logout("shutting down")


class Acceptor:
    """Take connections and hand each to the session its Logon names (SenderCompID of the
    client, TargetCompID ours); a second connection to a session already connected is refused."""

    def __init__(self, sessions: Callable[[str, str], Awaitable[Session | None]],
                 logon_timeout_s: float = 10.0) -> None:
        self.sessions = sessions
        self.logon_timeout_s = logon_timeout_s

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = new_parser()
        first: Message | None = None
        try:
            async with asyncio.timeout(self.logon_timeout_s):
                while first is None:
                    data = await reader.read(65536)
                    if not data:
                        break
                    parser.append_buffer(data)
                    m = parser.get_message()
                    if m is not None:
                        pairs = [(int(t), v) for t, v in m.pairs]
                        raw = m.encode(raw=True)
                        if framing_problem(pairs, raw) is None:
                            first = Message(pairs, raw)
        except (TimeoutError, ConnectionError, ValueError):
            first = None
        if first is None or first.msg_type != "A":
            writer.close()
            return
        session = await self.sessions(first.get(56) or "", first.get(49) or "")
        if session is None or session.connected:
            log.warning("fix logon for an unknown or busy session",
                        extra={"sender": first.get(49), "target": first.get(56)})
            writer.close()
            return
        await session.run(reader, writer, first, parser)

"""The FIX session layer, both ends of it over real TCP on localhost: Logon with
credentials, application messages in order, sequence numbers across restarts,
ResendRequest answered with PossDupFlag and GapFill, heartbeats and TestRequest,
session Rejects naming the field. (The router's side against a FIX engine that is
not ours, QuickFIX/J, is tests/e2e/test_fix_venue.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from orderstream.common.fix.session import (
    BEGIN_STRING,
    Acceptor,
    Initiator,
    Message,
    NotLoggedOn,
    Session,
    SessionConfig,
    encode,
    redacted,
)
from orderstream.common.fix.store import SessionStore
from tests import kafka_tools

ORDER = [(11, "X1"), (21, "1"), (55, "ADA-USD"), (54, "1"), (60, "20261201-10:00:00.000"), (38, "10"),
         (40, "2"), (44, "0.5"), (59, "1")]


def order(clord: str) -> list[tuple[int, object]]:
    return [(11, clord), *ORDER[1:]]


class App:
    def __init__(self, password: str = "secret") -> None:
        self.password = password
        self.received: list[Message] = []
        self.logons = 0
        self.not_resent: list[Message] = []
        self.arrived = asyncio.Event()

    async def on_logon(self, session: Session) -> None:
        self.logons += 1

    async def on_logout(self, session: Session) -> None:
        pass

    async def on_message(self, session: Session, msg: Message) -> None:
        self.received.append(msg)
        self.arrived.set()

    def on_not_resent(self, session: Session, msg: Message) -> None:
        self.not_resent.append(msg)

    async def authenticate(self, session: Session, logon: Message) -> str | None:
        if logon.get(553) != "alice" or logon.get(554) != self.password:
            return "bad username or password"
        return None

    async def wait_for(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.received) < n:
                self.arrived.clear()
                await self.arrived.wait()


class Ends:
    """A venue-like acceptor and a client initiator, each with its own store folder."""

    def __init__(self, tmp: Path, password: str = "secret", heartbeat_s: int = 30,
                 resend_max_age_s: float | None = None) -> None:
        self.tmp = tmp
        self.resend_max_age_s = resend_max_age_s
        self.password = password
        self.heartbeat_s = heartbeat_s
        self.server_app, self.client_app = App(), App()
        self.server: Session | None = None
        self.client: Session | None = None
        self.initiator: Initiator | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.listener: asyncio.Server | None = None
        self.port = 0

    def new_server(self) -> Session:
        self.server = Session(SessionConfig("EXEC", "CLIENT"), SessionStore(self.tmp / "server"),
                              self.server_app, initiator=False)
        return self.server

    def new_client(self) -> Session:
        config = SessionConfig("CLIENT", "EXEC", self.heartbeat_s, "alice", self.password,
                               resend_max_age_s=self.resend_max_age_s)
        self.client = Session(config,
                              SessionStore(self.tmp / "client"), self.client_app, initiator=True)
        return self.client

    async def listen(self) -> None:
        server = self.server or self.new_server()
        async def lookup(ours: str, theirs: str) -> Session | None:
            return server if (ours, theirs) == ("EXEC", "CLIENT") else None

        acceptor = Acceptor(lookup)
        self.listener = await asyncio.start_server(acceptor.serve, "127.0.0.1", self.port)
        self.port = self.listener.sockets[0].getsockname()[1]

    async def connect(self) -> Session:
        client = self.client or self.new_client()
        self.initiator = Initiator(client, "127.0.0.1", self.port, reconnect_s=0.05, reconnect_max_s=0.2)
        self.tasks.append(asyncio.get_running_loop().create_task(self.initiator.run()))
        return client

    async def drop_server(self) -> None:
        """The acceptor process dies: its listener and connection go, its store stays on disk."""
        assert self.listener is not None and self.server is not None
        self.listener.close()
        self.server.close("killed")
        await asyncio.sleep(0.05)
        self.server.store.close()
        self.server = None

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.listener is not None:
            self.listener.close()
        if self.server is not None:
            self.server.close("test over")
        await asyncio.sleep(0.05)


async def eventually(what: str, condition: Callable[[], bool]) -> None:
    await kafka_tools.eventually(what, _async(condition), timeout=10)


def _async(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return condition()

    return probe


async def logged_on(*sessions: Session | None, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        for s in sessions:
            assert s is not None
            await s.logged_on_event.wait()


@pytest.fixture
async def ends(tmp_path: Path) -> AsyncIterator[Ends]:
    e = Ends(tmp_path)
    yield e
    await e.close()


async def test_logon_orders_in_sequence_and_numbers_survive_a_restart(ends: Ends) -> None:
    await ends.listen()
    client = await ends.connect()
    await logged_on(client, ends.server)
    for i in range(3):
        await client.send("D", order(f"A{i}"))
    await ends.server_app.wait_for(3)
    assert [m.get(11) for m in ends.server_app.received] == ["A0", "A1", "A2"]
    assert [m.seq for m in ends.server_app.received] == [2, 3, 4]  # 1 was the Logon
    assert client.store.next_sender == 5 and ends.server.store.next_target == 5

    # both processes restart: new sessions on the same stores log on with the numbers they had
    await client.logout("bye")
    await ends.close()
    ends.tasks.clear()
    ends.client.store.close()
    ends.client = None
    await ends.drop_server()
    await ends.listen()
    client = await ends.connect()
    await logged_on(client, ends.server)
    await client.send("D", order("B0"))
    await ends.server_app.wait_for(4)
    assert ends.server_app.received[-1].get(11) == "B0"
    assert ends.server_app.received[-1].seq == 7  # 5 Logout, 6 Logon, 7 the order
    assert not any(m.poss_dup for m in ends.server_app.received)


async def test_a_gap_is_filled_by_resend_and_nothing_is_applied_twice(ends: Ends) -> None:
    await ends.listen()
    client = await ends.connect()
    await logged_on(client, ends.server)
    await client.send("D", order("A0"))
    await ends.server_app.wait_for(1)
    # messages the server "sent" while the client was away: kept in its store, never written
    server = ends.server
    assert server is not None
    writer, server._writer = server._writer, None
    for i in range(3):
        await server.send("8", [(37, f"O{i}"), (17, f"E{i}"), (150, "0"), (39, "0"), (55, "ADA-USD"),
                                (54, "1"), (151, "10"), (14, "0"), (6, "0"), (11, f"A{i}")])
    server._writer = writer
    # the next message shows the gap: the client asks, the server resends 3 reports and fills the rest
    await server.send("8", [(37, "O9"), (17, "E9"), (150, "0"), (39, "0"), (55, "ADA-USD"), (54, "1"),
                            (151, "10"), (14, "0"), (6, "0"), (11, "A9")])
    await ends.client_app.wait_for(4)
    got = ends.client_app.received
    assert [m.get(17) for m in got] == ["E0", "E1", "E2", "E9"]
    # E9 showed the gap and was dropped for it: it came again with the resend, like the others
    assert all(m.poss_dup and m.get(122) for m in got)  # PossDupFlag and OrigSendingTime
    assert client.store.next_target == server.store.next_sender
    await asyncio.sleep(0.2)
    assert len(got) == 4  # no second copy of anything


async def test_orders_sent_while_the_venue_was_down_reach_it_after_the_reconnect(ends: Ends) -> None:
    await ends.listen()
    client = await ends.connect()
    await logged_on(client, ends.server)
    await client.send("D", order("A0"))
    await ends.server_app.wait_for(1)
    await ends.drop_server()
    await eventually("the client sees the venue go", lambda: not client.logged_on)
    with pytest.raises(NotLoggedOn):
        await client.send("D", order("A1"))
    # the venue comes back with its store: the client logs on again and goes on
    await ends.listen()
    await logged_on(client, ends.server)
    await client.send("D", order("A1"))
    await ends.server_app.wait_for(2)
    assert [m.get(11) for m in ends.server_app.received] == ["A0", "A1"]


async def test_a_message_written_into_a_dying_socket_is_recovered_by_the_venues_resend_request(
        ends: Ends) -> None:
    await ends.listen()
    client = await ends.connect()
    await logged_on(client, ends.server)
    # the client's order is kept and "written", but the bytes never arrive
    writer, client._writer = client._writer, None
    await client.send("D", order("LOST"))
    client._writer = writer
    await client.send("D", order("NEXT"))
    await ends.server_app.wait_for(2)
    # NEXT showed the gap, was dropped for it and came again with LOST, once each
    assert [(m.get(11), m.poss_dup) for m in ends.server_app.received] == [("LOST", True), ("NEXT", True)]


async def test_an_order_too_old_to_resend_is_gap_filled_and_the_application_told(tmp_path: Path) -> None:
    ends = Ends(tmp_path, resend_max_age_s=0.5)
    try:
        await ends.listen()
        client = await ends.connect()
        await logged_on(client, ends.server)
        writer, client._writer = client._writer, None
        await client.send("D", order("STALE"))  # kept, never arrives
        client._writer = writer
        await asyncio.sleep(1.2)
        await client.send("D", order("FRESH"))  # shows the gap: both asked again, STALE too old
        await ends.server_app.wait_for(1)
        await asyncio.sleep(0.2)
        assert [m.get(11) for m in ends.server_app.received] == ["FRESH"]
        assert [m.get(11) for m in ends.client_app.not_resent] == ["STALE"]
        assert ends.server is not None and ends.server.store.next_target == client.store.next_sender
    finally:
        await ends.close()


async def test_a_wrong_password_is_refused_with_a_logout_naming_why(tmp_path: Path) -> None:
    ends = Ends(tmp_path, password="wrong")
    try:
        await ends.listen()
        client = ends.new_client()
        reader, writer = await asyncio.open_connection("127.0.0.1", ends.port)
        reason = await asyncio.wait_for(client.run(reader, writer), 5)
        assert not client.logged_on and client.logons == 0
        assert "bad username or password" in reason
    finally:
        await ends.close()


async def test_an_invalid_message_gets_a_reject_naming_the_field_and_the_session_goes_on(
        ends: Ends) -> None:
    await ends.listen()
    client = await ends.connect()
    await logged_on(client, ends.server)
    bad = [(t, v) for t, v in order("BAD") if t != 54]  # Side missing
    # sent raw, past our own outgoing check, as a broken client would
    seq = client.store.next_sender
    raw = encode(BEGIN_STRING, "D", client._header(seq), bad)
    client.store.keep(seq, raw)
    client._write(raw)
    await ends.client_app.wait_for(1)
    reject = ends.client_app.received[0]
    assert reject.msg_type == "3" and reject.get(45) == str(seq) and reject.get(371) == "54"
    assert "Side" in (reject.get(58) or "")
    await client.send("D", order("GOOD"))
    await ends.server_app.wait_for(1)
    assert [m.get(11) for m in ends.server_app.received] == ["GOOD"]


async def test_a_silent_counterparty_is_tested_then_dropped(tmp_path: Path) -> None:
    ends = Ends(tmp_path, heartbeat_s=1)
    try:
        await ends.listen()
        client = await ends.connect()
        await logged_on(client, ends.server)
        server = ends.server
        assert server is not None
        send = server._send
        server._send = lambda *a, **k: 0  # type: ignore[method-assign]
        # a TestRequest, unanswered: the client drops the connection
        await eventually("the client gives up on the silent server", lambda: not client.logged_on)
        server._send = send  # type: ignore[method-assign]
        await eventually("the initiator is back on", lambda: client.logons >= 2)  # at once
    finally:
        await ends.close()


def test_passwords_never_reach_a_log() -> None:
    raw = b"8=FIX.4.4\x019=30\x0135=A\x01553=alice\x01554=hunter2\x0110=000\x01"
    assert "hunter2" not in redacted(raw) and "554=***" in redacted(raw)


async def test_a_logout_is_stored_as_received_before_it_is_answered(ends: Ends) -> None:
    """A process killed the moment the other side has its Logout answer must not expect the Logout
    again: its next Logon would ask a resend the other side may never answer, and drop what follows."""
    await ends.listen()
    client = await ends.connect()
    await logged_on(client, ends.server)
    server = ends.server
    assert server is not None
    answered: list[tuple[str, int]] = []
    send = server._send

    def recording_send(msg_type: str, *args: Any, **kwargs: Any) -> Any:
        answered.append((msg_type, server.store.next_target))
        return send(msg_type, *args, **kwargs)

    server._send = recording_send  # type: ignore[method-assign]
    logout_seq = client.store.next_sender
    await client.logout("bye")
    await eventually("the server's Logout answer", lambda: any(t == "5" for t, _ in answered))
    assert ("5", logout_seq + 1) in answered

"""The router's FIX venue adapter against a venue that answers everything QuickFIX/J's example
Executor does not: cancel, replace (with ClOrdID chaining), status, partial fills and
rejections. The venue is a small FIX 4.4 acceptor on our session layer over real TCP."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal as D
from pathlib import Path

import pytest

from orderstream.common.fix.session import Acceptor, Message, Session, SessionConfig
from orderstream.common.fix.store import SessionStore
from orderstream.router.fixvenue import FixVenue, FixVenueConfig
from orderstream.router.venue import VenueError, VenueEvent, VenueOrder


def the(session: Session) -> Callable[[str, str], Awaitable[Session | None]]:
    async def lookup(ours: str, theirs: str) -> Session | None:
        return session

    return lookup


class Venue:
    """A FIX venue: orders rest until `fill`; cancels, replaces and status questions answered."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, str]] = {}  # current ClOrdID -> order fields
        self.ids = itertools.count(1)
        self.session: Session | None = None
        self.refuse_cancels = False

    async def on_logon(self, session: Session) -> None:
        self.session = session

    async def on_logout(self, session: Session) -> None:
        pass

    async def authenticate(self, session: Session, logon: Message) -> str | None:
        return None if logon.get(554) == "pw" else "wrong password"

    def on_not_resent(self, session: Session, msg: Message) -> None:
        pass

    async def report(self, o: dict[str, str], exec_type: str, status: str, **extra: object) -> None:
        assert self.session is not None
        body: list[tuple[int, object]] = [
            (37, o["id"]), (17, f"E{next(self.ids)}"), (150, exec_type), (39, status), (55, o["55"]),
            (54, o["54"]), (151, o["leaves"]), (14, o["cum"]), (6, "0"), (11, o["11"]), (38, o["38"]),
        ]
        if "41" in o:
            body.append((41, o["41"]))
        if "44" in o:
            body.append((44, o["44"]))
        body += list(extra.items())  # type: ignore[arg-type]
        await self.session.send("8", [(int(t), v) for t, v in body])

    async def on_message(self, session: Session, msg: Message) -> None:
        t = msg.msg_type
        if t == "D":
            o = {"id": f"V{next(self.ids)}", "11": msg.require(11), "55": msg.require(55),
                 "54": msg.require(54), "38": msg.require(38), "44": msg.get(44) or "",
                 "leaves": msg.require(38), "cum": "0"}
            if msg.require(55) == "BAD-USD":
                await self.report(o, "8", "8", **{"103": "1", "58": "unknown symbol"})
                return
            self.orders[o["11"]] = o
            await self.report(o, "0", "0")
        elif t in ("F", "G"):
            o = self.orders.get(msg.require(41))
            if o is None or (t == "F" and self.refuse_cancels):
                await session.send("9", [(37, "NONE"), (11, msg.require(11)), (41, msg.require(41)),
                                         (39, "8"), (434, "1" if t == "F" else "2"),
                                         (102, "1" if o is None else "0"), (58, "no such order or too late")])
                return
            del self.orders[msg.require(41)]
            o = {**o, "41": msg.require(41), "11": msg.require(11)}
            if t == "F":
                o["leaves"] = "0"
                await self.report(o, "4", "4")
            else:
                o["38"], o["44"] = msg.require(38), msg.get(44) or o["44"]
                o["leaves"] = str(D(o["38"]) - D(o["cum"]))
                self.orders[o["11"]] = o
                await self.report(o, "5", "5")
        elif t == "H":
            o = next((x for x in self.orders.values() if x["11"] == msg.require(11)), None)
            if o is None:
                await session.send("8", [
                    (37, "NONE"), (17, f"E{next(self.ids)}"), (150, "I"), (39, "8"), (55, msg.require(55)),
                    (54, msg.require(54)), (151, "0"), (14, "0"), (6, "0"), (11, msg.require(11)),
                    (790, msg.require(790)), (103, "5")])
            else:
                await self.report(o, "I", "0", **{"790": msg.require(790)})

    async def fill(self, clord: str, qty: str, price: str) -> None:
        o = self.orders[clord]
        o["cum"] = str(D(o["cum"]) + D(qty))
        o["leaves"] = str(D(o["38"]) - D(o["cum"]))
        await self.report(o, "F", "2" if o["leaves"] == "0" else "1", **{"32": qty, "31": price})


@pytest.fixture
async def venue_and_adapter(tmp_path: Path) -> AsyncIterator[tuple[Venue, FixVenue]]:
    venue = Venue()
    session = Session(SessionConfig("EXEC", "ORDERSTREAM"), SessionStore(tmp_path / "venue"), venue,
                      initiator=False)
    server = await asyncio.start_server(Acceptor(the(session)).serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = FixVenueConfig(port=port, password="pw", reconnect_s=0.05)  # type: ignore[arg-type]
    adapter = FixVenue("FIXV", config, tmp_path / "router")
    adapter.resume()
    await asyncio.wait_for(adapter.session.logged_on_event.wait(), 10)
    try:
        yield venue, adapter
    finally:
        assert adapter._task is not None
        adapter._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await adapter._task
        session.close("test over")
        server.close()


def order(order_id: str, symbol: str = "ADA-USD", qty: str = "100", price: str = "0.5") -> VenueOrder:
    return VenueOrder(order_id, "A", f"c-{order_id}", symbol, "BUY", D(qty), D(price))


async def events(adapter: FixVenue, n: int) -> list[VenueEvent]:
    return [await asyncio.wait_for(adapter.queue.get(), 5) for _ in range(n)]


async def test_place_partial_fills_replace_and_cancel_chain_client_order_ids(
    venue_and_adapter: tuple[Venue, FixVenue],
) -> None:
    venue, adapter = venue_and_adapter
    await adapter.place(order("O1"))
    await venue.fill("O1", "30", "0.5")
    await adapter.replace("O1", D(60), D("0.55"))
    await venue.fill("O1:r1", "10", "0.55")  # the venue knows the order by its new ClOrdID now
    await adapter.cancel("O1")  # OrigClOrdID: the replace's ClOrdID
    got = await events(adapter, 5)
    assert [(e.kind, e.venue_seq) for e in got] == [
        ("ACCEPTED", 1), ("FILLED", 2), ("REPLACED", 3), ("FILLED", 4), ("CANCELED", 5)]
    assert (got[1].quantity, got[1].price, got[1].leaves) == (D(30), D("0.5"), D(70))
    assert (got[2].quantity, got[2].price, got[2].leaves) == (D(60), D("0.55"), D(30))
    assert (got[3].quantity, got[3].price, got[3].leaves) == (D(10), D("0.55"), D(20))
    assert (got[4].quantity, got[4].leaves) == (D(20), D(0))  # 60 - 40 filled
    assert len({e.fill_id for e in got if e.fill_id}) == 2


async def test_refusals_carry_the_venue_code_and_text(venue_and_adapter: tuple[Venue, FixVenue]) -> None:
    venue, adapter = venue_and_adapter
    await adapter.place(order("O2", symbol="BAD-USD"))
    (rejected,) = await events(adapter, 1)
    assert (rejected.kind, rejected.code) == ("REJECTED", "UNKNOWN_SYMBOL")
    assert rejected.message == "FIXV: unknown symbol"
    await adapter.place(order("O3"))
    await events(adapter, 1)
    venue.refuse_cancels = True
    with pytest.raises(VenueError) as refused:
        await adapter.cancel("O3")
    assert (refused.value.code, refused.value.transient) == ("TOO_LATE_TO_CANCEL", False)
    assert "FIXV refused the cancel: no such order or too late" in refused.value.message
    with pytest.raises(VenueError) as unknown:
        await adapter.cancel("NEVER-SENT")
    assert unknown.value.code == "UNKNOWN_ORDER"


async def test_status_asks_the_venue_and_answers_from_the_journal(
    venue_and_adapter: tuple[Venue, FixVenue],
) -> None:
    venue, adapter = venue_and_adapter
    await adapter.place(order("O4"))
    await venue.fill("O4", "100", "0.5")
    await events(adapter, 2)
    assert [e.kind for e in await adapter.status("O4")] == ["ACCEPTED", "FILLED"]
    venue.orders.clear()  # the venue forgot it, but we heard its events: they stand
    assert [e.kind for e in await adapter.status("O4")] == ["ACCEPTED", "FILLED"]


async def test_a_restarted_adapter_knows_what_it_sent_and_heard(tmp_path: Path) -> None:
    venue = Venue()
    session = Session(SessionConfig("EXEC", "ORDERSTREAM"), SessionStore(tmp_path / "venue"), venue,
                      initiator=False)
    server = await asyncio.start_server(Acceptor(the(session)).serve, "127.0.0.1", 0)
    config = FixVenueConfig(port=server.sockets[0].getsockname()[1], password="pw")  # type: ignore[arg-type]
    first = FixVenue("FIXV", config, tmp_path / "router")
    first.resume()
    await asyncio.wait_for(first.session.logged_on_event.wait(), 10)
    await first.place(order("O5"))
    await first.replace("O5", D(50), None)
    await events(first, 2)
    assert first._task is not None
    first._task.cancel()
    session.close("router gone")
    first.store.close()
    await asyncio.sleep(0.1)

    again = FixVenue("FIXV", config, tmp_path / "router")  # a new process on the same folder
    assert [e.kind for e in again.events_of["O5"]] == ["ACCEPTED", "REPLACED"]
    assert again._clord_and_qty("O5") == ("O5:r1", D(50))
    assert again.requests["O5"] == 1  # the next replace or cancel takes a fresh ClOrdID
    with pytest.raises(VenueError) as never:
        await again.status("O6")
    assert never.value.code == "UNKNOWN_ORDER"
    server.close()

"""A bare FIX 4.4 client for tests, written from the FIX specification with the simplefix codec
only (not our session layer): the test drives every session step itself (Logon, sequence
numbers, ResendRequest, Logout), so what the gateway's acceptor does is seen as it is. Every
message received is checked against the FIX 4.4 dictionary, and the transcript is kept."""

from __future__ import annotations

import asyncio
import time

import simplefix

from orderstream.common.fix.dictionary import Dictionary
from orderstream.common.fix.session import Message, redacted


def now() -> str:
    t = time.time()
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}"


class FixClient:
    def __init__(self, port: int, sender: str, target: str = "ORDERSTREAM") -> None:
        self.port, self.sender, self.target = port, sender, target
        self.next_out = 1
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = simplefix.FixParser()
        self.transcript: list[str] = []
        self.problems: list[str] = []

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.parser = simplefix.FixParser()

    def send(self, msg_type: str, body: list[tuple[int, object]], seq: int | None = None) -> int:
        assert self.writer is not None
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.4", header=True)
        m.append_pair(35, msg_type, header=True)
        m.append_pair(49, self.sender, header=True)
        m.append_pair(56, self.target, header=True)
        used = self.next_out if seq is None else seq
        m.append_pair(34, used, header=True)
        m.append_pair(52, now(), header=True)
        for tag, value in body:
            m.append_pair(tag, value)
        raw = m.encode()
        self.writer.write(raw)
        self.transcript.append("> " + redacted(raw))
        if seq is None:
            self.next_out += 1
        return used

    async def receive(self, timeout: float = 30.0) -> Message:
        assert self.reader is not None
        deadline = time.monotonic() + timeout
        while True:
            m = self.parser.get_message()
            if m is not None:
                pairs = [(int(t), v) for t, v in m.pairs]
                msg = Message(pairs, m.encode(raw=True))
                self.transcript.append("< " + redacted(msg.raw))
                self.problems += [p.text for p in Dictionary.fix44().check(pairs)]
                return msg
            data = await asyncio.wait_for(self.reader.read(65536), max(0.1, deadline - time.monotonic()))
            if not data:
                raise ConnectionError("the gateway closed the connection")
            self.parser.append_buffer(data)

    async def until(self, match: object, timeout: float = 60.0) -> Message:
        """The next message `match(msg)` accepts, skipping heartbeats (answered) and others."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.receive(max(0.1, deadline - time.monotonic()))
            if msg.msg_type == "1":
                self.send("0", [(112, msg.require(112))])
            if match(msg):  # type: ignore[operator]
                return msg

    async def logon(self, password: str, reset: bool = False) -> Message:
        body: list[tuple[int, object]] = [(98, 0), (108, 30), (553, self.sender), (554, password)]
        if reset:
            body.append((141, "Y"))
        self.send("A", body)
        return await self.until(lambda m: m.msg_type in ("A", "5"))

    async def drop(self) -> None:
        """The TCP connection dies, without a Logout, right after what was sent went out: whatever
        the gateway answers from now on is never read."""
        assert self.writer is not None
        await self.writer.drain()
        self.writer.transport.write_eof()  # FIN after the bytes already sent; nothing more is read
        self.writer.transport.abort()
        self.writer = self.reader = None

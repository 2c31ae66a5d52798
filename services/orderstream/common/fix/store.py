"""What a FIX session keeps on disk: its two sequence numbers and every message it sent.

A session that restarts logs on with the numbers it had, and answers the
counterparty's ResendRequest from the messages it kept, so neither side loses
or repeats an application message across reconnects and process restarts.

Two files in the session's folder: `seqnums` (the next number to send and the
next one expected, rewritten in place) and `messages` (appended: a line
`<seq> <length>` then the raw message). A message is kept before it is written
to the socket, and the expected number is advanced only after the message was
handled, so a crash repeats (as a possible duplicate) rather than loses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


class SessionStore:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._seq_path = folder / "seqnums"
        self._msg_path = folder / "messages"
        self.next_sender, self.next_target = 1, 1
        if self._seq_path.exists():
            parts = self._seq_path.read_text().split()
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                self.next_sender, self.next_target = int(parts[0]), int(parts[1])
        self._offsets: dict[int, tuple[int, int]] = {}  # seq -> (offset, length) in `messages`
        self._load_messages()
        # A message kept but whose new number was not yet written: never reuse its number.
        if self._offsets:
            self.next_sender = max(self.next_sender, max(self._offsets) + 1)
        self._seq_fd = os.open(self._seq_path, os.O_RDWR | os.O_CREAT, 0o600)
        self._msg_file = self._msg_path.open("ab")
        self._write_seqnums()

    def _load_messages(self) -> None:
        if not self._msg_path.exists():
            return
        data = self._msg_path.read_bytes()
        pos = 0
        good = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            head = data[pos:nl].split()
            if len(head) != 2 or not all(h.isdigit() for h in head):
                break
            seq, length = int(head[0]), int(head[1])
            start = nl + 1
            if start + length + 1 > len(data):
                break  # cut off by a crash: that message was never written to the socket
            self._offsets[seq] = (start, length)
            pos = start + length + 1
            good = pos
        if good < len(data):
            with self._msg_path.open("r+b") as f:
                f.truncate(good)

    def _write_seqnums(self) -> None:
        text = f"{self.next_sender:020d} {self.next_target:020d}\n".encode()
        os.pwrite(self._seq_fd, text, 0)

    def keep(self, seq: int, raw: bytes) -> None:
        """Keep a message about to be sent with number `seq` (the next one)."""
        offset = self._msg_file.tell()
        self._msg_file.write(b"%d %d\n" % (seq, len(raw)) + raw + b"\n")
        self._msg_file.flush()
        self._offsets[seq] = (offset + len(b"%d %d\n" % (seq, len(raw))), len(raw))
        self.next_sender = seq + 1
        self._write_seqnums()

    def set_next_target(self, seq: int) -> None:
        if seq != self.next_target:
            self.next_target = seq
            self._write_seqnums()

    def set_next_sender(self, seq: int) -> None:
        self.next_sender = seq
        self._write_seqnums()

    def sent(self, begin: int, end: int) -> Iterator[tuple[int, bytes]]:
        """The kept messages numbered begin..end (both included), in order; gaps are skipped."""
        with self._msg_path.open("rb") as f:
            for seq in range(begin, end + 1):
                where = self._offsets.get(seq)
                if where is not None:
                    f.seek(where[0])
                    yield seq, f.read(where[1])

    def all_sent(self) -> Iterator[tuple[int, bytes]]:
        if not self._offsets:
            return iter(())
        return self.sent(min(self._offsets), max(self._offsets))

    def reset(self) -> None:
        """Both numbers back to 1 and the kept messages dropped (a logon with ResetSeqNumFlag)."""
        self._msg_file.close()
        self._msg_path.write_bytes(b"")
        self._msg_file = self._msg_path.open("ab")
        self._offsets.clear()
        self.next_sender, self.next_target = 1, 1
        self._write_seqnums()

    def close(self) -> None:
        self._msg_file.close()
        os.close(self._seq_fd)

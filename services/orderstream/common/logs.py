"""Structured JSON logs: one object per line, on stderr, for every service.

While the broker is away the Kafka clients log the same complaint many times a second
("Unable connect to node ...": about 16,000 ERROR lines in a minute's outage). `Repeats` lets
the first line of each kind through (a kind: the logger, the level and the message's template),
holds back the repeats for `REPEAT_WINDOW_S`, then lets the next one through with how many were
held back (`repeated`). Our own loggers are not held back: their lines say different things.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from datetime import UTC, datetime
from typing import Any

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
REPEAT_WINDOW_S = 10.0
# client libraries that repeat themselves in an outage, and our producer's librdkafka error callback
CHATTY = ("aiokafka", "kafka", "faust", "mode", "orderstream.common.producer")


class Repeats(logging.Filter):
    """One line per kind of message of the client libraries per `window_s`, with the count of the rest."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # kind -> (last let through, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(CHATTY):
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        last = self._seen.get(kind)
        if last is not None and now - last[0] < self.window_s:
            self._seen[kind] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.repeated = last[1]  # held back since the last line of this kind
        self._seen[kind] = (now, 0)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON; `extra={...}` fields become top-level keys."""

    def __init__(self, service: str = "", worker: str = "") -> None:
        super().__init__()
        self.service = service
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "service": self.service,
            "worker": self.worker,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def logging_config(service: str, level: str, worker: str = "") -> dict[str, Any]:
    """A dictConfig that sends every logger through the JSON formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service, "worker": worker}},
        "filters": {"repeats": {"()": Repeats}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr", "filters": ["repeats"]}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {"aiokafka": {"level": "WARNING"}, "faust": {"level": "WARNING"},
                    "mode": {"level": "WARNING"}},
    }

"""The execution worker: wiring only (decode, call the core, write tables, send)."""

from __future__ import annotations

from orderstream.common.app import Service
from orderstream.execution.settings import ExecutionSettings


def build(settings: ExecutionSettings | None = None) -> Service:
    """The execution service, ready to run."""
    return Service(settings or ExecutionSettings())

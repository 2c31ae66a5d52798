"""The collector worker: wiring only (decode, call the core, write tables, send)."""

from __future__ import annotations

from orderstream.collector.settings import CollectorSettings
from orderstream.common.app import Service


def build(settings: CollectorSettings | None = None) -> Service:
    """The collector service, ready to run."""
    return Service(settings or CollectorSettings())

"""The matcher worker: wiring only (decode, call the core, write tables, send)."""

from __future__ import annotations

from orderstream.common.app import Service
from orderstream.matcher.settings import MatcherSettings


def build(settings: MatcherSettings | None = None) -> Service:
    """The matcher service, ready to run."""
    return Service(settings or MatcherSettings())

"""The router worker: wiring only (decode, call the core, write tables, send)."""

from __future__ import annotations

from orderstream.common.app import Service
from orderstream.router.settings import RouterSettings


def build(settings: RouterSettings | None = None) -> Service:
    """The router service, ready to run."""
    return Service(settings or RouterSettings())

"""The collateral worker: wiring only (decode, call the core, write tables, send)."""

from __future__ import annotations

from orderstream.collateral.settings import CollateralSettings
from orderstream.common.app import Service


def build(settings: CollateralSettings | None = None) -> Service:
    """The collateral service, ready to run."""
    return Service(settings or CollateralSettings())

"""Settings of the matcher service (env prefix ORDERSTREAM_MATCHER_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings


class MatcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_MATCHER_")
    service: ClassVar[str] = "matcher"

    web_port: int = Field(6073, ge=0, le=65535, description="Port of /healthz and /metrics.")
    market_band_ppm: int = Field(
        50_000, ge=1, description="Market orders trade at most this far from the best price (ppm; 5%).")
    dedupe_window: int = Field(
        20_000, ge=1, description="Command ids remembered per symbol, to ignore a repeated command.")
    expiry_check_s: float = Field(0.5, gt=0, description="How often GTD expiries are looked for.")
    depth_interval_s: float = Field(1.0, gt=0, description="How often changed books publish md.depth.")
    depth_levels: int = Field(50, ge=1, description="Levels per side in an md.depth snapshot.")

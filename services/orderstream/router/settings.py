"""Settings of the router service (env prefix ORDERSTREAM_ROUTER_)."""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar

from pydantic import BaseModel, Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings
from orderstream.router.fixvenue import FixVenueConfig
from orderstream.router.mockvenue import MockVenueConfig


class RiskLimits(BaseModel):
    """Pre-trade limits; the global ones apply to every account without its own."""

    max_order_quantity: Decimal = Field(Decimal(1_000_000), gt=0)
    max_order_notional: Decimal = Field(Decimal(100_000_000), gt=0)
    max_open_orders: int = Field(10_000, ge=1)
    max_position: Decimal = Field(Decimal(10_000_000), gt=0)
    max_daily_loss: Decimal = Field(Decimal(1_000_000_000), gt=0)


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_ROUTER_")
    service: ClassVar[str] = "router"

    web_port: int = Field(6072, ge=0, le=65535, description="Port of /healthz and /metrics.")
    dedupe_window: int = Field(
        50_000, ge=1, description="Source records remembered (with what they sent) to ignore a redelivery."
    )
    limits: RiskLimits = Field(default_factory=RiskLimits, description="Global risk limits (JSON).")
    account_limits: dict[str, RiskLimits] = Field(
        default_factory=dict, description="Per-account risk limits replacing the global ones (JSON)."
    )
    venue_map: dict[str, str] = Field(
        default_factory=dict, description="Symbol -> venue, overriding the instrument's venue (JSON)."
    )
    mock_venues: dict[str, MockVenueConfig] = Field(
        default_factory=lambda: {"MOCK": MockVenueConfig()},
        description="Mock external venues by name (JSON); INTERNAL is the matcher.",
    )
    fix_venues: dict[str, FixVenueConfig] = Field(
        default_factory=lambda: {"FIX-EXEC": FixVenueConfig()},
        description="External venues over FIX 4.4 by name (JSON): host, port, CompIDs, credentials.",
    )
    venue_attempts: int = Field(5, ge=1, description="Tries of a venue call before giving up.")
    venue_backoff_s: float = Field(0.05, gt=0, description="First retry delay; doubles per try.")
    venue_timeout_s: float = Field(5.0, gt=0, description="A venue call unanswered this long is retried.")
    reconcile_interval_s: float = Field(
        2.0, gt=0, description="How often orders in flight at venues are checked."
    )
    algo_tick_s: float = Field(
        0.05, gt=0, description="How often TWAP/VWAP parents are checked for a due slice."
    )
    algo_tape_s: float = Field(
        6 * 3600.0, gt=0, description="Trades kept per symbol (md.trades, seconds back): VWAP volume and the "
        "window's benchmarks; a longer window's benchmark covers only this much."
    )
    index_round_interval_s: float = Field(
        0.25, gt=0, description="How often index orders between rounds are looked at for the next round."
    )
    venue_order_rate: dict[str, float] = Field(
        default_factory=dict,
        description="Child orders per second index orders may send to a venue, by venue (JSON); "
        "the others get index_order_rate.",
    )
    index_order_rate: float = Field(
        50.0,
        gt=0,
        description="Child orders per second index orders may send to a venue not in venue_order_rate.",
    )

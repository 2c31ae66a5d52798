"""Settings of the collateral service (env prefix ORDERSTREAM_COLLATERAL_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings


class CollateralSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_COLLATERAL_")
    service: ClassVar[str] = "collateral"

    web_port: int = Field(6071, ge=0, le=65535, description="Port of /healthz and /metrics.")
    dedupe_window: int = Field(
        50_000, ge=1, description="Source records remembered (with what they sent) to ignore a redelivery."
    )
    order_memory_s: float = Field(
        3_600, gt=0, description="How long after its own time an order id is remembered, so that a "
        "repeat of it is ignored however much traffic came between. Keep it above the gateway's "
        "ORDERSTREAM_GATEWAY_RESEND_WITHIN_S."
    )

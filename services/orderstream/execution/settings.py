"""Settings of the execution service (env prefix ORDERSTREAM_EXECUTION_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings


class ExecutionSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_EXECUTION_")
    service: ClassVar[str] = "execution"

    web_port: int = Field(6074, ge=0, le=65535, description="Port of /healthz and /metrics.")
    dedupe_window: int = Field(
        50_000, ge=1, description="Source records remembered (with what they sent) to ignore a redelivery.")
    closed_orders_kept: int = Field(
        200_000, ge=1, description="Closed orders kept per worker, so a late cancel of one is answered.")

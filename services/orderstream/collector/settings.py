"""Settings of the collector service (env prefix ORDERSTREAM_COLLECTOR_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings


class CollectorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_COLLECTOR_")
    service: ClassVar[str] = "collector"

    web_port: int = Field(6075, ge=0, le=65535, description="Port of /healthz and /metrics.")
    batch_size: int = Field(2000, ge=1, description="Most records written to MongoDB in one batch.")

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

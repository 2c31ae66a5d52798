"""Settings of the router service (env prefix ORDERSTREAM_ROUTER_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_ROUTER_")
    service: ClassVar[str] = "router"

    web_port: int = Field(6072, ge=0, le=65535, description="Port of /healthz and /metrics.")

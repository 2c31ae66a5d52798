"""Settings of the gateway (env prefix ORDERSTREAM_GATEWAY_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_GATEWAY_")
    service: ClassVar[str] = "gateway"

    web_host: str = Field("127.0.0.1", description="Interface the public API listens on.")
    web_port: int = Field(8080, ge=0, le=65535, description="Port of the public API, /healthz and /metrics.")

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

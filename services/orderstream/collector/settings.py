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
    write_interval_s: float = Field(
        0.1, ge=0, le=5, description="Least time between two writes of one partition's records: "
        "what arrives meanwhile waits in the consumer and goes in the next write. The collector is "
        "off the order path (reports reach clients through the gateway's user stream), and a write "
        "costs the collector and the MongoDB-wire server about the same for one report as for "
        "hundreds, while both share the machine with the order path. 0: write each fetched batch "
        "at once.",
    )

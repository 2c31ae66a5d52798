"""Service settings: one frozen object per service, from the environment, unknown keys rejected."""

from __future__ import annotations

import os
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PARTITIONS = 4
ENV_PREFIX = "ORDERSTREAM_"


class ServiceSettings(BaseSettings):
    """What every service needs. A service subclasses it, sets `service` and
    `model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_<SERVICE>_")`.

    Keys shared by the whole deployment are read without the service's prefix:
    KAFKA_BOOTSTRAP_SERVERS, MONGO_URL, SCHEMA_REGISTRY_URL, ORDERSTREAM_TOPIC_PREFIX,
    ORDERSTREAM_PARTITIONS. Everything else is ORDERSTREAM_<SERVICE>_<FIELD>; such a
    variable that names no field is an error, so a typo cannot leave a default in force.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    service: ClassVar[str] = "service"

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "ORDERSTREAM_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers, host:port[,host:port].",
    )
    mongo_url: str = Field(
        "mongodb://127.0.0.1:27117/",
        validation_alias=AliasChoices("MONGO_URL", "ORDERSTREAM_MONGO_URL"),
        description="MongoDB connection string.",
    )
    mongo_database: str = Field("orderstream", description="MongoDB database name.")
    schema_registry_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SCHEMA_REGISTRY_URL", "ORDERSTREAM_SCHEMA_REGISTRY_URL"),
        description="Confluent-compatible Schema Registry; unset uses the embedded catalog.",
    )
    topic_prefix: str = Field(
        "", validation_alias=AliasChoices("ORDERSTREAM_TOPIC_PREFIX"),
        description="Prefix of every topic name (tests, shared clusters).",
    )
    partitions: int = Field(
        DEFAULT_PARTITIONS, ge=1, validation_alias=AliasChoices("ORDERSTREAM_PARTITIONS"),
        description="Partitions of every topic; the same for all services so keys co-partition.",
    )
    store: str = Field("memory://", description="Faust table store: memory:// or rocksdb:// (rocksdict).")
    data_dir: str = Field(".cache/faust", description="Faust data directory (RocksDB tables).")
    web_host: str = Field("127.0.0.1", description="Interface of /healthz and /metrics.")
    web_port: int = Field(6066, ge=0, le=65535, description="Port of /healthz and /metrics.")
    session_timeout_s: float = Field(
        30.0, ge=6.0, description="Kafka consumer session timeout: how long a dead worker's "
        "partitions wait before another worker takes them over.",
    )
    # Latency on the order path: an order crosses five hops, so what each hop waits for counts
    # five times. These are every wait a hop has, chosen for low latency at low load; under
    # load, batches fill by themselves (see docs/latency.md for the reasons and figures).
    producer_linger_ms: float = Field(
        0.5, ge=0, description="How long librdkafka waits to fill a batch before sending. At low load "
        "a batch never fills, so this is added to every hop; under load the records that wait for "
        "the request in flight batch anyway (5 requests in flight per broker).",
    )
    commit_interval_s: float = Field(
        1.0, gt=0, description="How often handled offsets are committed. A commit first waits for "
        "every record produced so far to be stored, off the handlers' path; a shorter interval "
        "means less to read again after a crash.",
    )
    standby_replicas: int = Field(
        1, ge=0, description="Faust's table_standby_replicas: how many other workers of the service "
        "keep a standby copy of each table partition, read from its changelog as it is written. With "
        "N workers, N-1 (what `orderstream up --replicas N` sets); with one worker it has no effect.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO")
    worker_id: str = Field("", description="Name of this worker in logs; defaults to host:pid.")
    instance_id: str = Field(
        "", description="Static group membership (Kafka's group.instance.id): a name for this worker, "
        "stable across its restarts and unique in its service. A restarted worker then takes its "
        "partitions back at once, instead of after the session timeout. Empty: dynamic membership.",
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_env(cls, data: Any) -> Any:
        prefix = str(cls.model_config.get("env_prefix", ENV_PREFIX))
        if prefix == ENV_PREFIX:
            return data  # the base class itself: no service namespace to police
        known = {prefix + name.upper() for name in cls.model_fields}
        for key in os.environ:
            if key.startswith(prefix) and key not in known:
                raise ValueError(f"unknown setting {key} for {cls.service}; known: {sorted(known)}")
        return data

    def topic(self, name: str) -> str:
        """The deployed name of a catalog topic."""
        return self.topic_prefix + name


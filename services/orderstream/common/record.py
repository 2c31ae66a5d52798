"""Base class of every Avro-typed record."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """An immutable message; its class name equals its Avro record name."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    avro_name: ClassVar[str] = ""

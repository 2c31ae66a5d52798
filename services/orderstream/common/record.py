"""Base class of every Avro-typed record."""

from __future__ import annotations

import functools
from decimal import Context, Decimal
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class Record(BaseModel):
    """An immutable message; its class name equals its Avro record name."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)

    avro_name: ClassVar[str] = ""


@functools.cache
def _quantum(places: int, digits: int) -> tuple[Decimal, Context]:
    return Decimal(1).scaleb(-places), Context(prec=digits + 1)


def rescale(value: Decimal, places: int, digits: int) -> Decimal:
    """`value` with exactly `places` decimal places (the caller has checked that nothing is lost)."""
    quantum, context = _quantum(places, digits)  # built once: this runs for every decimal decoded
    return value.quantize(quantum, context=context)

"""Builds a valid example of any record class, for round-trip tests."""

from __future__ import annotations

import types
import typing
from decimal import Decimal
from enum import Enum
from typing import Any

from pydantic import BaseModel


def _value(ann: Any, name: str) -> Any:
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(ann) if a is not type(None))
        return _value(inner, name)
    if origin is typing.Annotated:
        return _value(typing.get_args(ann)[0], name)
    if origin is list:
        return [_value(typing.get_args(ann)[0], name)]
    if isinstance(ann, type) and issubclass(ann, Enum):
        return list(ann)[-1]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return example(ann)
    return {str: f"{name}-1", int: 1_700_000_000_123_456_789, bool: True,
            Decimal: Decimal("12345.678901234567890123")}[ann]


def example(cls: type[BaseModel]) -> Any:
    """An instance of `cls` with every field set, optional ones included."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return cls(**{name: _value(hints[name], name) for name in cls.model_fields})

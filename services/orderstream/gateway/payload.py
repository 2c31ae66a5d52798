"""What a client sends as JSON (a REST body, a WebSocket frame), parsed with its nesting bounded.

Python's parser recurses once per level: a body nested some thousands deep raised RecursionError (a
500, or a dropped WebSocket). No request of the API nests more than a few levels, so anything deeper
than the bound is refused (40004) before it reaches a model.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from orderstream.gateway.errors import ApiError


def loads(text: str | bytes, max_depth: int, what: str, *, exact: bool = False) -> Any:
    """The JSON value of `text` (a `what`: "body" or "frame"); 40002 when not JSON, 40004 when too deep.
    `exact`: a number with a fraction or exponent is a Decimal of its very digits (never a float), and
    NaN or Infinity, which JSON does not have, is refused."""
    try:
        value = (
            json.loads(text, parse_float=Decimal, parse_constant=_no_constant) if exact else json.loads(text)
        )
    except RecursionError:
        raise too_deep(what, max_depth) from None
    except ValueError:
        raise ApiError(40002, f"the {what} is not JSON") from None
    if depth_above(value, max_depth):
        raise too_deep(what, max_depth)
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def depth_above(value: Any, limit: int) -> bool:
    """True when arrays and objects nest more than `limit` levels (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def too_deep(what: str, max_depth: int) -> ApiError:
    return ApiError(
        40004,
        f"the {what}'s JSON is nested deeper than {max_depth} levels",
        {"field": f"({what})", "max_depth": max_depth},
    )

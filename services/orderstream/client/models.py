"""Typed answers of the gateway's common operations (the REST bodies and WebSocket results).

Unknown fields are ignored, so a newer gateway that adds one does not break an older client.
Amounts are exact Decimals, never floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict


class Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderPlaced(Answer):
    """An order (or basket, list, algo or index order) taken: `duplicate` when its client_order_id was
    placed before, and then `order_id` is the original's."""

    order_id: str
    client_order_id: str
    duplicate: bool


class Requested(Answer):
    """A cancel, replace or index update sent: the outcome comes as an execution report."""

    order_id: str


class Order(Answer):
    """One of the caller's orders: `state` is its latest execution report as stored (None until one)."""

    order_id: str
    client_order_id: str
    symbol: str
    state: dict[str, Any] | None


class OrdersPage(Answer):
    """A page of orders; `next` is the cursor of the next page (None on the last)."""

    orders: list[dict[str, Any]]
    next: str | None


class Balance(Answer):
    free: Decimal
    held: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.held


class ApiKey(Answer):
    """A new account's API key; the secret is shown only here."""

    account_id: str
    key_id: str
    secret: str
    permissions: list[str]


class CommandSent(Answer):
    """An admin command (deposit, withdrawal) sent: its outcome comes on the user stream."""

    command_id: str

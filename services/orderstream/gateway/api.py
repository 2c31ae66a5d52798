"""Request models of the public API (REST and WebSocket share them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from orderstream.common import records as r
from orderstream.gateway.errors import ApiError


def _exact(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('must be a decimal string such as "0.1", never a JSON floating-point number')
    return value


Exact = Annotated[Decimal, BeforeValidator(_exact), Field(gt=0, max_digits=38, decimal_places=18)]
ClientId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/-]+$")]


class PlaceOrder(BaseModel):
    """order.place / POST /api/v1/orders."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: ClientId
    symbol: str = Field(min_length=1, max_length=32)
    side: r.Side
    order_type: r.OrderType = r.OrderType.LIMIT
    time_in_force: r.TimeInForce = r.TimeInForce.GTC
    quantity: Exact
    price: Exact | None = None
    stop_price: Exact | None = None
    quote_budget: Exact | None = None
    post_only: bool = False
    expire_at: int | None = None


class CancelOrder(BaseModel):
    """order.cancel / DELETE /api/v1/orders/{order_id}."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=80)


class Subscription(BaseModel):
    """subscribe / unsubscribe: `{"stream": "user"}` or `{"stream": "market", "symbol": ...}`."""

    model_config = ConfigDict(extra="forbid")

    stream: Literal["user", "market"]
    symbol: str | None = Field(None, min_length=1, max_length=32)


class History(BaseModel):
    """orders.history / GET /api/v1/history: newest first, paged with `before`."""

    model_config = ConfigDict(extra="forbid")

    symbol: str | None = None
    status: str | None = None
    limit: int = Field(50, ge=1, le=500)
    before: str | None = None


class ReplaceOrder(BaseModel):
    """order.replace / PATCH /api/v1/orders/{order_id}: a new total quantity and/or limit price."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=80)
    quantity: Exact | None = None
    price: Exact | None = None

    @model_validator(mode="after")
    def _something(self) -> ReplaceOrder:
        if self.quantity is None and self.price is None:
            raise ValueError("give quantity, price or both")
        return self


class CreateAccount(BaseModel):
    """POST /api/v1/admin/accounts: an account and its first key."""

    model_config = ConfigDict(extra="forbid")

    account_id: ClientId
    permissions: list[str] = Field(default_factory=lambda: ["trade", "read"])


class PostDeposit(BaseModel):
    """POST /api/v1/admin/deposits: a collateral command."""

    model_config = ConfigDict(extra="forbid")

    account_id: ClientId
    asset: str = Field(min_length=1, max_length=16)
    amount: Exact
    source: str = Field("admin", max_length=64)


class PostWithdrawal(BaseModel):
    """POST /api/v1/admin/withdrawals: a collateral command; only the free balance can go."""

    model_config = ConfigDict(extra="forbid")

    account_id: ClientId
    asset: str = Field(min_length=1, max_length=16)
    amount: Exact
    destination: str = Field(min_length=1, max_length=64)


def check_increments(instrument: r.Instrument, quantity: Decimal | None, **prices: Decimal | None) -> None:
    """A quantity off the lot size (40012) or a price off the tick size (40011) is refused."""
    if quantity is not None and quantity % instrument.lot_size:
        raise ApiError(
            40012,
            f"quantity must be a multiple of the lot size {instrument.lot_size}",
            {"field": "quantity", "lot_size": str(instrument.lot_size)},
        )
    for name, value in prices.items():
        if value is not None and value % instrument.tick_size:
            raise ApiError(
                40011,
                f"{name} must be a multiple of the tick size {instrument.tick_size}",
                {"field": name, "tick_size": str(instrument.tick_size)},
            )


def check_instrument(o: PlaceOrder, instrument: r.Instrument | None) -> None:
    """Refuse what the instrument's rules refuse, before it costs the system anything."""
    if instrument is None or not instrument.enabled:
        raise ApiError(40010, f"unknown symbol {o.symbol}", {"field": "symbol"})
    check_increments(instrument, o.quantity, price=o.price, stop_price=o.stop_price)
    if o.quantity < instrument.min_quantity:
        raise ApiError(40013, f"quantity below the minimum {instrument.min_quantity}", {"field": "quantity"})


def openapi() -> dict[str, Any]:
    """The OpenAPI document the gateway serves at /api/v1/openapi.json."""

    def body(model: type[BaseModel]) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}

    signed = [
        {"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
        for n in ("X-OS-KEY", "X-OS-TIMESTAMP", "X-OS-SIGNATURE")
    ]
    error = {
        "description": "error",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "details"],
                            "properties": {
                                "code": {"type": "integer"},
                                "message": {"type": "string"},
                                "details": {"type": "object"},
                            },
                        }
                    },
                }
            }
        },
    }
    ok = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Orderstream gateway", "version": "1"},
        "paths": {
            "/api/v1/orders": {
                "get": {
                    "operationId": "orders.open",
                    "parameters": signed,
                    "responses": {"200": ok, "401": error},
                },
                "post": {
                    "operationId": "order.place",
                    "parameters": signed,
                    "requestBody": body(PlaceOrder),
                    "responses": {"200": ok, "400": error, "401": error, "429": error},
                },
            },
            "/api/v1/orders/{order_id}": {
                "get": {
                    "operationId": "order.get",
                    "parameters": [
                        *signed,
                        {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {"200": ok, "401": error, "404": error},
                },
                "patch": {
                    "operationId": "order.replace",
                    "parameters": [
                        *signed,
                        {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "requestBody": body(ReplaceOrder),
                    "responses": {"200": ok, "400": error, "401": error, "404": error},
                },
                "delete": {
                    "operationId": "order.cancel",
                    "parameters": [
                        *signed,
                        {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {"200": ok, "401": error, "404": error},
                },
            },
            "/api/v1/history": {
                "get": {
                    "operationId": "orders.history",
                    "parameters": [
                        *signed,
                        *(
                            {"name": n, "in": "query", "required": False, "schema": {"type": t}}
                            for n, t in (
                                ("symbol", "string"),
                                ("status", "string"),
                                ("limit", "integer"),
                                ("before", "string"),
                            )
                        ),
                    ],
                    "responses": {"200": ok, "400": error, "401": error},
                }
            },
            "/api/v1/balances": {
                "get": {
                    "operationId": "balances.get",
                    "parameters": signed,
                    "responses": {"200": ok, "401": error},
                }
            },
            "/api/v1/admin/accounts": {
                "post": {
                    "operationId": "admin.account",
                    "parameters": signed,
                    "requestBody": body(CreateAccount),
                    "responses": {"200": ok, "400": error, "403": error},
                }
            },
            "/api/v1/admin/deposits": {
                "post": {
                    "operationId": "admin.deposit",
                    "parameters": signed,
                    "requestBody": body(PostDeposit),
                    "responses": {"200": ok, "400": error, "403": error},
                }
            },
            "/api/v1/admin/withdrawals": {
                "post": {
                    "operationId": "admin.withdraw",
                    "parameters": signed,
                    "requestBody": body(PostWithdrawal),
                    "responses": {"200": ok, "400": error, "403": error},
                }
            },
        },
    }

"""Request models of the public API (REST and WebSocket share them)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from orderstream.common import records as r
from orderstream.common.decimals import API_MAX
from orderstream.gateway.errors import ApiError


def _exact(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('must be a decimal string such as "0.1", never a JSON floating-point number')
    return value


Exact = Annotated[
    Decimal,
    BeforeValidator(_exact),
    Field(gt=0, le=API_MAX, max_digits=38, decimal_places=18),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^[0-9]{1,16}(\.[0-9]{1,18})?$",
            "description": "An exact decimal > 0 and at most 10^15 as a string, at most 18 decimal places.",
        }
    ),
]
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
    display_quantity: Exact | None = None
    trailing_offset: Exact | None = None
    trailing_offset_type: r.TrailingOffsetType | None = None
    self_trade_prevention: r.SelfTradePrevention = r.SelfTradePrevention.CANCEL_NEWEST
    post_only: bool = False
    expire_at: int | None = None


class PlaceBasketLeg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=32)
    side: r.Side
    weight: Exact
    price: Exact | None = None
    quote_budget: Exact | None = None


class PlaceBasket(BaseModel):
    """order.basket / POST /api/v1/baskets: one parent order split into a child order per leg."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: ClientId
    quantity: Exact
    time_in_force: Literal[r.TimeInForce.GTC, r.TimeInForce.IOC] = r.TimeInForce.GTC
    legs: list[PlaceBasketLeg] = Field(min_length=1, max_length=20)

    @field_validator("legs")
    @classmethod
    def _each_symbol_once(cls, legs: list[PlaceBasketLeg]) -> list[PlaceBasketLeg]:
        symbols = [leg.symbol for leg in legs]
        if len(set(symbols)) != len(symbols):
            raise ValueError("each symbol may appear in one leg only")
        return legs


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


class OpenOrders(BaseModel):
    """orders.open / GET /api/v1/orders: the open orders by order id, paged with `after`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(500, ge=1, le=1000)
    after: str | None = Field(None, min_length=1, max_length=80)


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


class PostKillSwitch(BaseModel):
    """POST /api/v1/admin/kill-switch: stop (or allow again) new orders of an account or a symbol."""

    model_config = ConfigDict(extra="forbid")

    scope: r.KillScope
    target: str = Field(min_length=1, max_length=64)
    engaged: bool
    reason: str = Field(min_length=1, max_length=200)


class Answer(BaseModel):
    """A successful answer: the `result` of a WebSocket reply, or a REST 200 body."""

    model_config = ConfigDict(extra="forbid")


class OrderPlaced(Answer):
    order_id: str
    client_order_id: str
    duplicate: bool = Field(
        description="True when this client_order_id was placed before: the original order."
    )


class CancelRequested(Answer):
    order_id: str
    cancel: Literal["requested"]


class ReplaceRequested(Answer):
    order_id: str
    replace: Literal["requested"]


class OrderView(Answer):
    order_id: str
    client_order_id: str
    symbol: str
    state: dict[str, Any] | None = Field(
        description="The latest execution report as stored (null until one)."
    )


class OrderList(Answer):
    orders: list[dict[str, Any]]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last.")


class HistoryPage(Answer):
    orders: list[dict[str, Any]]
    next: str | None = Field(description="Pass as `before` for the next (older) page; null on the last.")


class Balance(Answer):
    free: str
    held: str


class Balances(Answer):
    balances: dict[str, Balance]


class AccountCreated(Answer):
    account_id: str
    key_id: str
    secret: str = Field(description="Shown once; stored only encrypted.")
    permissions: list[str]


class CommandSent(Answer):
    command_id: str


class KillSwitchSent(CommandSent):
    scope: str
    target: str
    engaged: bool


RESPONSES: dict[str, type[Answer]] = {
    "order.place": OrderPlaced,
    "order.basket": OrderPlaced,
    "order.cancel": CancelRequested,
    "order.replace": ReplaceRequested,
    "order.get": OrderView,
    "orders.open": OrderList,
    "orders.history": HistoryPage,
    "balances.get": Balances,
    "admin.account": AccountCreated,
    "admin.deposit": CommandSent,
    "admin.withdraw": CommandSent,
    "admin.kill_switch": KillSwitchSent,
}


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
    if o.display_quantity is not None and (
        o.display_quantity % instrument.lot_size or o.display_quantity > o.quantity
    ):
        raise ApiError(
            40012,
            "display_quantity must be a multiple of the lot size, at most the quantity",
            {"field": "display_quantity", "lot_size": str(instrument.lot_size)},
        )
    if o.quantity < instrument.min_quantity:
        raise ApiError(40013, f"quantity below the minimum {instrument.min_quantity}", {"field": "quantity"})


def check_basket(b: PlaceBasket, instruments: Any) -> None:
    """Every leg names a known symbol, and its child order (quantity x weight) keeps the lot and tick."""
    for i, leg in enumerate(b.legs):
        instrument = instruments.get(leg.symbol)
        field = f"legs.{i}"
        if instrument is None or not instrument.enabled:
            raise ApiError(40010, f"unknown symbol {leg.symbol}", {"field": f"{field}.symbol"})
        child = b.quantity * leg.weight
        if child > API_MAX:
            raise ApiError(40012, f"leg {i}: quantity x weight = {child} is above {API_MAX:.0E}",
                           {"field": f"{field}.weight"})
        if child % instrument.lot_size or child < instrument.min_quantity:
            raise ApiError(
                40012,
                f"leg {i}: quantity x weight = {child} is off the lot size "
                f"{instrument.lot_size} or below the minimum {instrument.min_quantity}",
                {"field": f"{field}.weight", "lot_size": str(instrument.lot_size)},
            )
        if leg.price is not None and leg.price % instrument.tick_size:
            raise ApiError(
                40011,
                f"leg {i}: price must be a multiple of the tick size {instrument.tick_size}",
                {"field": f"{field}.price", "tick_size": str(instrument.tick_size)},
            )


def openapi() -> dict[str, Any]:
    """The OpenAPI document the gateway serves at /api/v1/openapi.json."""

    components: dict[str, Any] = {}

    def body(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        return {"required": True, "content": {"application/json": {"schema": schema}}}

    def query(*params: tuple[str, str]) -> list[dict[str, Any]]:
        return [{"name": n, "in": "query", "required": False, "schema": {"type": t}} for n, t in params]

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
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Orderstream gateway", "version": "1"},
        "paths": {
            "/api/v1/orders": {
                "get": {
                    "operationId": "orders.open",
                    "parameters": [*signed, *query(("limit", "integer"), ("after", "string"))],
                    "responses": {"400": error, "401": error},
                },
                "post": {
                    "operationId": "order.place",
                    "parameters": signed,
                    "requestBody": body(PlaceOrder),
                    "responses": {"400": error, "401": error, "429": error},
                },
            },
            "/api/v1/orders/{order_id}": {
                "get": {
                    "operationId": "order.get",
                    "parameters": [
                        *signed,
                        {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {"401": error, "404": error},
                },
                "patch": {
                    "operationId": "order.replace",
                    "parameters": [
                        *signed,
                        {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "requestBody": body(ReplaceOrder),
                    "responses": {"400": error, "401": error, "404": error},
                },
                "delete": {
                    "operationId": "order.cancel",
                    "parameters": [
                        *signed,
                        {"name": "order_id", "in": "path", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {"401": error, "404": error},
                },
            },
            "/api/v1/history": {
                "get": {
                    "operationId": "orders.history",
                    "parameters": [
                        *signed,
                        *query(("symbol", "string"), ("status", "string"), ("limit", "integer"),
                               ("before", "string")),
                    ],
                    "responses": {"400": error, "401": error},
                }
            },
            "/api/v1/balances": {
                "get": {
                    "operationId": "balances.get",
                    "parameters": signed,
                    "responses": {"401": error},
                }
            },
            "/api/v1/admin/kill-switch": {
                "post": {
                    "operationId": "admin.kill_switch",
                    "parameters": signed,
                    "requestBody": body(PostKillSwitch),
                    "responses": {"400": error, "403": error},
                }
            },
            "/api/v1/baskets": {
                "post": {
                    "operationId": "order.basket",
                    "parameters": signed,
                    "requestBody": body(PlaceBasket),
                    "responses": {"400": error, "401": error, "429": error},
                }
            },
            "/api/v1/admin/accounts": {
                "post": {
                    "operationId": "admin.account",
                    "parameters": signed,
                    "requestBody": body(CreateAccount),
                    "responses": {"400": error, "403": error},
                }
            },
            "/api/v1/admin/deposits": {
                "post": {
                    "operationId": "admin.deposit",
                    "parameters": signed,
                    "requestBody": body(PostDeposit),
                    "responses": {"400": error, "403": error},
                }
            },
            "/api/v1/admin/withdrawals": {
                "post": {
                    "operationId": "admin.withdraw",
                    "parameters": signed,
                    "requestBody": body(PostWithdrawal),
                    "responses": {"400": error, "403": error},
                }
            },
        },
    }
    for ops in document["paths"].values():  # type: ignore[attr-defined]
        for op in ops.values():
            model = RESPONSES[op["operationId"]]
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(schema.pop("$defs", {}))
            op["responses"]["200"] = {
                "description": model.__name__,
                "content": {"application/json": {"schema": schema}},
            }
    document["components"] = {"schemas": components}
    return document

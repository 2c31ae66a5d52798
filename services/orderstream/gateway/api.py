"""Request models of the public API (REST and WebSocket share them)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
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
from orderstream.common.history import MAX_PAGE, parse_cursor
from orderstream.common.topics import CATALOG, dlq_name
from orderstream.gateway.errors import ApiError

# An exact amount as a string: plain digits (no sign, exponent or spaces), above 0 and at most 10^15,
# at most 18 decimal places. The server checks the same pattern the OpenAPI document shows.
EXACT_PATTERN = (
    r"^(?:[1-9][0-9]{0,14}(?:\.[0-9]{1,18})?|0\.(?=[0-9]{1,18}$)0*[1-9][0-9]*|1000000000000000(?:\.0{1,18})?)$"
)
_EXACT = re.compile(EXACT_PATTERN)


def _exact(value: Any) -> Any:
    if isinstance(value, float):
        raise ValueError('must be a decimal string such as "0.1", never a JSON floating-point number')
    if isinstance(value, str) and not _EXACT.fullmatch(value):
        raise ValueError(
            'must be a decimal string such as "0.1": digits, above 0, at most 10^15 and 18 decimal places'
        )
    return value


Exact = Annotated[
    Decimal,
    BeforeValidator(_exact),
    Field(gt=0, le=API_MAX, max_digits=38, decimal_places=18),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": EXACT_PATTERN},
                {"type": "integer", "minimum": 1, "maximum": int(API_MAX)},
            ],
            "description": "An exact decimal above 0 and at most 10^15, at most 18 decimal places: a string "
            "(or a JSON integer), never a JSON floating-point number.",
        }
    ),
]
Permission = Literal["trade", "read", "admin"]
DEFAULT_PERMISSIONS: tuple[Permission, ...] = ("trade", "read")
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_.:/-]+$"
ClientId = Annotated[str, Field(min_length=1, max_length=64, pattern=CLIENT_ID_PATTERN)]


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
    expire_at: int | None = Field(  # an Avro long: a larger one could not be sent (found by the property run)
        None, ge=0, le=2**63 - 1, description="GTD expiry, nanoseconds since the Unix epoch, UTC."
    )


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


MAX_ALGO_WINDOW_MS = 6 * 3600 * 1000  # the router keeps this much of the trade tape (router algo_tape_s)
MAX_ALGO_SLICES = 10_000


class PlaceAlgoOrder(BaseModel):
    """order.algo / POST /api/v1/algo-orders: a TWAP or VWAP parent order, sliced by the router into
    child orders `<order_id>/<slice>` (IOC at limit_price, or market for an unpriced sell) over a window."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: ClientId
    symbol: str = Field(min_length=1, max_length=32)
    side: r.Side
    algo: r.AlgoType
    quantity: Exact
    limit_price: Exact | None = Field(
        None, description="Worst price of any child; required for a BUY (it bounds the collateral held)."
    )
    start_at: int | None = Field(  # its end must stay an Avro long too
        None, ge=0, le=2**63 - 1 - MAX_ALGO_WINDOW_MS * 1_000_000,
        description="Start of the window, nanoseconds since the Unix epoch, UTC; default now.",
    )
    duration_ms: int = Field(ge=1, le=MAX_ALGO_WINDOW_MS, description="Length of the window.")
    slice_interval_ms: int = Field(ge=50, le=MAX_ALGO_WINDOW_MS, description="Time between slices.")
    participation: Exact | None = Field(
        None, description="0 < p <= 1: most share of the volume others traded since the last slice that "
        "a slice may take. Required for VWAP; an optional cap for TWAP."
    )


class PlaceOco(BaseModel):
    """order.oco / POST /api/v1/oco: two orders on one side, one-cancels-the-other. Order `<id>/0` is a
    limit order at `price`; order `<id>/1` a stop at `stop_price` (stop-limit at `stop_limit_price` when
    given). A fill (even partial) or the trigger of either cancels the other in the same matching step."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: ClientId
    symbol: str = Field(min_length=1, max_length=32)
    side: r.Side
    quantity: Exact
    price: Exact = Field(description="The limit leg's price: above the stop for a sell, below it for a buy.")
    stop_price: Exact
    stop_limit_price: Exact | None = Field(
        None, description="Makes the stop leg a stop-limit (a buy needs it)."
    )
    self_trade_prevention: r.SelfTradePrevention = r.SelfTradePrevention.CANCEL_NEWEST


class PlaceBracket(BaseModel):
    """order.bracket / POST /api/v1/brackets: an entry whose fills place, for the quantity filled, a
    take-profit limit (`<id>/1`) and a stop-loss (`<id>/2`) on the other side, linked as an OCO."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: ClientId
    symbol: str = Field(min_length=1, max_length=32)
    side: r.Side = Field(description="The entry's side; the exits are on the other.")
    quantity: Exact
    order_type: Literal[r.OrderType.LIMIT, r.OrderType.MARKET] = r.OrderType.LIMIT
    price: Exact | None = Field(None, description="The entry's limit price.")
    quote_budget: Exact | None = Field(None, description="A market buy entry: most quote asset it may spend.")
    time_in_force: r.TimeInForce = r.TimeInForce.GTC
    expire_at: int | None = Field(
        None, ge=0, le=2**63 - 1, description="GTD entry expiry, nanoseconds since the Unix epoch, UTC."
    )
    take_profit_price: Exact
    stop_price: Exact = Field(description="The stop-loss trigger price.")
    stop_limit_price: Exact | None = Field(
        None, description="Makes the stop-loss a stop-limit (a sell entry's must be: it buys back)."
    )
    self_trade_prevention: r.SelfTradePrevention = r.SelfTradePrevention.CANCEL_NEWEST


class IndexLeg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(min_length=1, max_length=32)
    weight: Exact = Field(description="Quantity of the symbol in one index unit.")


def _symbols_once(legs: list[IndexLeg]) -> list[IndexLeg]:
    if len({leg.symbol for leg in legs}) != len(legs):
        raise ValueError("each symbol may appear in one leg only")
    return legs


IndexLegs = Annotated[list[IndexLeg], Field(min_length=1, max_length=20), AfterValidator(_symbols_once)]


class RequestQuote(BaseModel):
    """quote.request / POST /api/v1/quotes: what a collateral amount buys of an index now."""

    model_config = ConfigDict(extra="forbid")

    legs: IndexLegs
    collateral_amount: Exact = Field(description="Most to spend, fees included, in the legs' quote asset.")


class PlaceIndexOrder(BaseModel):
    """order.index / POST /api/v1/index-orders: buy index units with a collateral amount, round by round."""

    model_config = ConfigDict(extra="forbid")

    client_order_id: ClientId
    legs: IndexLegs
    collateral_amount: Exact = Field(description="Most to spend, fees included, in the legs' quote asset.")
    quote_id: str | None = Field(None, min_length=1, max_length=64, description="A quote of these legs "
                                 "(quote.request), unexpired: each leg's child orders pay at most its "
                                 "quoted limit price, raised by max_slippage.")
    max_slippage: Exact | None = Field(None, description="Most a child may pay above the reference price, "
                                       "as a fraction at most 1 (0.01 = 1%): the quote's limit price with "
                                       "quote_id, else the best ask now. Absent: 0 with a quote, no cap "
                                       "without.")

    @field_validator("max_slippage")
    @classmethod
    def _at_most_one(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and value > 1:
            raise ValueError("must be at most 1 (a fraction: 0.01 = 1%)")
        return value


class UpdateIndexOrder(BaseModel):
    """order.index.update / PATCH /api/v1/index-orders/{order_id}: a new collateral amount (the total)."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(min_length=1, max_length=80)
    collateral_amount: Exact = Field(description="New total, fees and the spent part included; the router "
                                     "takes no less than what is spent and committed to open children.")


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

    symbol: str | None = Field(None, min_length=1, max_length=32)
    status: r.OrderStatus | None = None
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    before: str | None = Field(
        None,
        max_length=200,
        description="The `next` cursor of the previous page: <ts_ns>:<order_id>, ts_ns below 2^63.",
        json_schema_extra={"pattern": r"^[0-9]{1,19}:[\s\S]+$"},  # parse_cursor checks it, naming the form
    )

    @field_validator("before")
    @classmethod
    def _cursor(cls, before: str | None) -> str | None:
        if before is not None:
            parse_cursor(before)
        return before


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
    permissions: list[Permission] = Field(default_factory=lambda: [*DEFAULT_PERMISSIONS])


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


DEAD_LETTER_TOPICS = tuple(dlq_name(t.name) for t in CATALOG)


class ReplayDeadLetters(BaseModel):
    """POST /api/v1/admin/dead-letters/replay: send a dead-letter topic's records back, each once."""

    model_config = ConfigDict(extra="forbid")

    topic: str = Field(
        description="A dead-letter topic, without the topic prefix.",
        json_schema_extra={"enum": list(DEAD_LETTER_TOPICS)},
    )

    @field_validator("topic")
    @classmethod
    def _known(cls, topic: str) -> str:
        if topic not in DEAD_LETTER_TOPICS:
            raise ValueError("not a dead-letter topic of the catalog")
        return topic


class Answer(BaseModel):
    """A successful answer: the `result` of a WebSocket reply, or a REST 200 body."""

    model_config = ConfigDict(extra="forbid")


class OrderPlaced(Answer):
    order_id: str
    client_order_id: str
    duplicate: bool = Field(
        description="True when this client_order_id was placed before: the original order."
    )


class QuoteLeg(Answer):
    symbol: str
    weight: str
    quantity: str = Field(description="What the leg buys for the units: units x weight.")
    average_price: str | None = Field(description="Notional / quantity, walking the asks; null for 0.")
    limit_price: str | None = Field(description="The worst ask level walked; null for 0.")
    notional: str
    fee: str = Field(description="Taker fee on the notional.")
    cost: str = Field(description="notional + fee.")


class Quote(Answer):
    quote_id: str
    expires_at: int = Field(
        description="Nanoseconds since the Unix epoch, UTC; placing from it later is refused."
    )
    asset: str = Field(description="The collateral asset: every leg's quote asset.")
    collateral_amount: str
    units: str = Field(description="Index units the amount buys now: a multiple of unit_step.")
    unit_step: str = Field(description="The smallest units that keep every leg on its lot size.")
    legs: list[QuoteLeg]
    cost: str = Field(description="Sum of the legs' costs, fees included.")
    fees: str
    unspent: str = Field(description="collateral_amount - cost.")
    limited_by: str = Field(description="FUNDS (one more step costs more than the amount) or LIQUIDITY "
                            "(a leg's book holds no more).")
    books: dict[str, int] = Field(description="Per leg, the market-data sequence of the depth snapshot used.")


class IndexUpdateRequested(Answer):
    order_id: str
    update: Literal["requested"]


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


class InstrumentView(Answer):
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: str
    lot_size: str
    min_quantity: str
    min_notional: str
    maker_fee: str
    taker_fee: str
    venue: str
    enabled: bool


class Instruments(Answer):
    instruments: list[InstrumentView]


class ServiceView(Answer):
    status: str = Field(description="ok, starting (its /healthz answers 503) or down (no answer).")
    port: int
    pid: int | None = Field(description="Its process id, from /healthz (or the local supervisor).")
    restarts: int | None = Field(description="Restarts by the local supervisor; null when none runs it.")
    assigned_partitions: int | None = Field(description="Partitions its consumer holds (workers).")
    health: dict[str, Any] = Field(description="Its /healthz body as answered.")


class Services(Answer):
    services: dict[str, ServiceView]


class ConsumerLag(Answer):
    lag: dict[str, dict[str, int]] = Field(
        description="Per service (consumer group), per topic: end offset minus committed, summed over "
        "partitions."
    )


class DeadLetterCount(Answer):
    records: int = Field(description="Records the dead-letter topic keeps.")
    not_replayed: int = Field(description="Of these, the ones the replayer has not sent back yet.")


class DeadLetters(Answer):
    topics: dict[str, DeadLetterCount]


class Replayed(Answer):
    topic: str
    replayed: list[str] = Field(description="One line per record sent back (empty: nothing to replay).")


RESPONSES: dict[str, type[Answer]] = {
    "order.place": OrderPlaced,
    "order.basket": OrderPlaced,
    "order.oco": OrderPlaced,
    "order.bracket": OrderPlaced,
    "order.algo": OrderPlaced,
    "quote.request": Quote,
    "order.index": OrderPlaced,
    "order.index.update": IndexUpdateRequested,
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
    "instruments.list": Instruments,
    "admin.services": Services,
    "admin.lag": ConsumerLag,
    "admin.dead_letters": DeadLetters,
    "admin.replay": Replayed,
}


def plain(value: Decimal) -> str:
    """A decimal as a person writes it: 0.5, not 0.500000000000000000 (what Avro's scale gives)."""
    return format(value.normalize(), "f")


def check_increments(instrument: r.Instrument, quantity: Decimal | None, **prices: Decimal | None) -> None:
    """A quantity off the lot size (40012) or a price off the tick size (40011) is refused."""
    if quantity is not None and quantity % instrument.lot_size:
        raise ApiError(
            40012,
            f"quantity must be a multiple of the lot size {plain(instrument.lot_size)}",
            {"field": "quantity", "lot_size": str(instrument.lot_size)},
        )
    for name, value in prices.items():
        if value is not None and value % instrument.tick_size:
            raise ApiError(
                40011,
                f"{name} must be a multiple of the tick size {plain(instrument.tick_size)}",
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
        raise ApiError(40013, f"quantity below the minimum {plain(instrument.min_quantity)}",
                       {"field": "quantity"})


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
                f"{plain(instrument.lot_size)} or below the minimum {plain(instrument.min_quantity)}",
                {"field": f"{field}.weight", "lot_size": str(instrument.lot_size)},
            )
        if leg.price is not None and leg.price % instrument.tick_size:
            raise ApiError(
                40011,
                f"leg {i}: price must be a multiple of the tick size {plain(instrument.tick_size)}",
                {"field": f"{field}.price", "tick_size": str(instrument.tick_size)},
            )


def check_algo(a: PlaceAlgoOrder, instrument: r.Instrument | None, now: int) -> None:
    """What the window, the participation and the instrument allow (40001 naming the field, 40010-40013)."""
    if instrument is None or not instrument.enabled:
        raise ApiError(40010, f"unknown symbol {a.symbol}", {"field": "symbol"})
    check_increments(instrument, a.quantity, limit_price=a.limit_price)
    if a.quantity < instrument.min_quantity:
        raise ApiError(40013, f"quantity below the minimum {plain(instrument.min_quantity)}",
                       {"field": "quantity"})
    for field, broken, issue in (
        ("limit_price", a.side == r.Side.BUY and a.limit_price is None,
         "required for a BUY: it bounds what the parent can cost"),
        ("participation", a.participation is not None and a.participation > 1, "must be at most 1"),
        ("participation", a.algo == r.AlgoType.VWAP and a.participation is None, "required for VWAP"),
        ("start_at", a.start_at is not None and a.start_at + a.duration_ms * 1_000_000 < now,
         "the window has ended already"),
        ("slice_interval_ms", a.slice_interval_ms > a.duration_ms, "must be at most duration_ms"),
        ("slice_interval_ms", a.duration_ms // a.slice_interval_ms + 1 > MAX_ALGO_SLICES,
         f"gives more than {MAX_ALGO_SLICES} slices over duration_ms"),
    ):
        if broken:
            raise ApiError(40001, f"invalid {field}: {issue}", {"field": field, "issue": issue})


def _order(side: r.Side, order_type: r.OrderType, quantity: Decimal, price: Decimal | None = None,
           stop_price: Decimal | None = None, **more: Any) -> r.ListOrder:
    tif = more.pop("time_in_force", r.TimeInForce.GTC)
    return r.ListOrder(side=side, order_type=order_type, time_in_force=tif, quantity=quantity, price=price,
                       stop_price=stop_price, **more)


def _required(field: str, when: str) -> ApiError:
    return ApiError(40001, f"invalid {field}: required {when}", {"field": field, "issue": "required"})


def _stop_type(stop_limit_price: Decimal | None) -> r.OrderType:
    return r.OrderType.STOP_MARKET if stop_limit_price is None else r.OrderType.STOP_LIMIT


def _above(low_name: str, low: Decimal, high_name: str, high: Decimal) -> None:
    if not low < high:
        raise ApiError(40001, f"invalid {high_name}: must be above {low_name} ({plain(low)})",
                       {"field": high_name, "issue": f"not above {low_name}"})


def oco_fields(o: PlaceOco, instrument: r.Instrument | None) -> dict[str, Any]:
    """The SubmitOrderList fields of an OCO, checked against the instrument and between its prices."""
    _list_instrument(o.symbol, instrument, o.quantity, price=o.price, stop_price=o.stop_price,
                     stop_limit_price=o.stop_limit_price)
    if o.side == r.Side.SELL:  # take the profit above, stop the loss below
        _above("stop_price", o.stop_price, "price", o.price)
    else:
        _above("price", o.price, "stop_price", o.stop_price)
        if o.stop_limit_price is None:
            raise _required("stop_limit_price", "for a buy OCO (a stop-market buy cannot be funded)")
    legs = [_order(o.side, r.OrderType.LIMIT, o.quantity, o.price),
            _order(o.side, _stop_type(o.stop_limit_price), o.quantity, o.stop_limit_price, o.stop_price)]
    return {"client_order_id": o.client_order_id, "symbol": o.symbol, "contingency": r.ContingencyType.OCO,
            "orders": legs, "self_trade_prevention": o.self_trade_prevention}


def bracket_fields(b: PlaceBracket, instrument: r.Instrument | None) -> dict[str, Any]:
    """The SubmitOrderList fields of a bracket, checked against the instrument and between its prices."""
    _list_instrument(b.symbol, instrument, b.quantity, price=b.price, take_profit_price=b.take_profit_price,
                     stop_price=b.stop_price, stop_limit_price=b.stop_limit_price)
    if b.order_type == r.OrderType.LIMIT and b.price is None:
        raise _required("price", "for a LIMIT entry")
    if b.order_type == r.OrderType.MARKET and b.side == r.Side.BUY and b.quote_budget is None:
        raise _required("quote_budget", "for a MARKET buy entry")
    if b.time_in_force == r.TimeInForce.GTD and b.expire_at is None:
        raise _required("expire_at", "for a GTD entry")
    low, high = ("stop_price", b.stop_price), ("take_profit_price", b.take_profit_price)
    if b.side == r.Side.SELL:
        low, high = high, low
        if b.stop_limit_price is None:
            raise _required("stop_limit_price",
                            "for a sell entry (its stop-loss buys back; a stop-market buy cannot be funded)")
    if b.price is not None:
        _above(*low, "price", b.price)
        _above("price", b.price, *high)
    else:
        _above(*low, *high)
    exit_side = r.Side.SELL if b.side == r.Side.BUY else r.Side.BUY
    orders = [
        _order(b.side, b.order_type, b.quantity, b.price, time_in_force=b.time_in_force,
               quote_budget=b.quote_budget, expire_at=b.expire_at),
        _order(exit_side, r.OrderType.LIMIT, b.quantity, b.take_profit_price),
        _order(exit_side, _stop_type(b.stop_limit_price), b.quantity, b.stop_limit_price, b.stop_price),
    ]
    return {"client_order_id": b.client_order_id, "symbol": b.symbol,
            "contingency": r.ContingencyType.BRACKET, "orders": orders,
            "self_trade_prevention": b.self_trade_prevention}


def _list_instrument(symbol: str, instrument: r.Instrument | None, quantity: Decimal,
                     **prices: Decimal | None) -> None:
    if instrument is None or not instrument.enabled:
        raise ApiError(40010, f"unknown symbol {symbol}", {"field": "symbol"})
    if instrument.venue != "INTERNAL":
        raise ApiError(40014, f"order lists trade on the internal venue; {symbol} trades at "
                              f"{instrument.venue}", {"field": "symbol"})
    check_increments(instrument, quantity, **prices)
    if quantity < instrument.min_quantity:
        raise ApiError(40013, f"quantity below the minimum {plain(instrument.min_quantity)}",
                       {"field": "quantity"})


# The operations of the REST API: (path, HTTP method, operation id, request body model, what it may refuse
# beyond what every operation may: 401, 403, 413, 500, 503).
OPERATIONS: tuple[tuple[str, str, str, type[BaseModel] | None, tuple[str, ...]], ...] = (
    ("/api/v1/orders", "get", "orders.open", None, ("400",)),
    ("/api/v1/orders", "post", "order.place", PlaceOrder, ("400", "429")),
    ("/api/v1/orders/{order_id}", "get", "order.get", None, ("400", "404")),
    ("/api/v1/orders/{order_id}", "patch", "order.replace", ReplaceOrder, ("400", "404", "409")),
    ("/api/v1/orders/{order_id}", "delete", "order.cancel", None, ("400", "404", "409")),
    ("/api/v1/history", "get", "orders.history", None, ("400",)),
    ("/api/v1/balances", "get", "balances.get", None, ()),
    ("/api/v1/baskets", "post", "order.basket", PlaceBasket, ("400", "429")),
    ("/api/v1/oco", "post", "order.oco", PlaceOco, ("400", "429")),
    ("/api/v1/brackets", "post", "order.bracket", PlaceBracket, ("400", "429")),
    ("/api/v1/algo-orders", "post", "order.algo", PlaceAlgoOrder, ("400", "429")),
    ("/api/v1/quotes", "post", "quote.request", RequestQuote, ("400",)),
    ("/api/v1/index-orders", "post", "order.index", PlaceIndexOrder, ("400", "429")),
    ("/api/v1/index-orders/{order_id}", "patch", "order.index.update", UpdateIndexOrder,
     ("400", "404", "409")),
    ("/api/v1/admin/kill-switch", "post", "admin.kill_switch", PostKillSwitch, ("400",)),
    ("/api/v1/admin/accounts", "post", "admin.account", CreateAccount, ("400",)),
    ("/api/v1/admin/deposits", "post", "admin.deposit", PostDeposit, ("400",)),
    ("/api/v1/admin/withdrawals", "post", "admin.withdraw", PostWithdrawal, ("400",)),
    ("/api/v1/instruments", "get", "instruments.list", None, ()),
    ("/api/v1/admin/services", "get", "admin.services", None, ()),
    ("/api/v1/admin/lag", "get", "admin.lag", None, ()),
    ("/api/v1/admin/dead-letters", "get", "admin.dead_letters", None, ()),
    ("/api/v1/admin/dead-letters/replay", "post", "admin.replay", ReplayDeadLetters, ("400",)),
)
ERROR_STATUSES = {
    "400": "a request the API refuses: not JSON (40002), nested too deep (40004), a field at fault (40001, "
    "40010-40013, naming it)",
    "401": "missing, unknown, stale, replayed or wrongly signed credentials (40100-40104)",
    "403": "the key lacks the permission (40301)",
    "404": "no such order (40401) or route (40400)",
    "409": "a basket is canceled or replaced leg by leg; a TWAP/VWAP parent or an order list is canceled, "
    "never replaced (40904); an index order is changed by order.index.update, not replaced, and only an "
    "index order is (40905)",
    "413": "body larger than the gateway's MAX_FRAME_BYTES (41301)",
    "429": "order rate limit (42901), with Retry-After",
    "500": "internal error (50000), logged with the request id in details",
    "503": "an order not confirmed: send it again with the same client_order_id (50001); MongoDB or Kafka "
    "did not answer (50002); busy: too many orders in the order path, send it again after Retry-After "
    "(50302)",
}
EVERY_OPERATION = ("401", "403", "413", "500", "503")


def openapi() -> dict[str, Any]:
    """The OpenAPI document the gateway serves at /api/v1/openapi.json."""
    components: dict[str, Any] = {}

    def schema_of(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        return schema

    def error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}

    signed = [
        {"name": n, "in": "header", "required": True, "schema": {"type": "string"}}
        for n in ("X-OS-KEY", "X-OS-TIMESTAMP", "X-OS-SIGNATURE")
    ]
    order_id = {
        "name": "order_id",
        "in": "path",
        "required": True,
        "schema": schema_of(CancelOrder)["properties"]["order_id"],
    }
    queries = {
        op_id: [
            {"name": name, "in": "query", "required": False, "schema": _not_null(field)}
            for name, field in schema_of(model)["properties"].items()
        ]
        for op_id, model in (("orders.history", History), ("orders.open", OpenOrders))
    }
    paths: dict[str, dict[str, Any]] = {}
    for path, method, op_id, body, refusals in OPERATIONS:
        parameters = [*signed]
        if "{order_id}" in path:
            parameters.append(order_id)
        parameters.extend(queries.get(op_id, []))
        answer = RESPONSES[op_id]
        responses = {
            "200": {
                "description": answer.__name__,
                "content": {"application/json": {"schema": schema_of(answer)}},
            },
            **{code: error(ERROR_STATUSES[code]) for code in sorted({*refusals, *EVERY_OPERATION})},
        }
        operation: dict[str, Any] = {"operationId": op_id, "parameters": parameters, "responses": responses}
        if body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of(body)}},
            }
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Orderstream gateway", "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its null branch (a query parameter is absent, never null)."""
    branches = [b for b in schema.get("anyOf", ()) if b.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k != "anyOf" and (k, v) != ("default", None)}
    return {**rest, **branches[0]} if len(branches) == 1 else rest


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
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

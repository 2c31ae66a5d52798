"""The matching core's vocabulary: orders, commands and events in integer ticks and lots.

Prices are integer ticks and quantities integer lots of the instrument, so the
core does exact integer arithmetic only; `rules.py` converts at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Kind(IntEnum):
    LIMIT = 0
    MARKET = 1
    STOP_MARKET = 2
    STOP_LIMIT = 3
    TAKE_PROFIT_MARKET = 4
    TAKE_PROFIT_LIMIT = 5
    TRAILING_STOP = 6


TRIGGERED_KINDS = frozenset({Kind.STOP_MARKET, Kind.STOP_LIMIT, Kind.TAKE_PROFIT_MARKET,
                             Kind.TAKE_PROFIT_LIMIT, Kind.TRAILING_STOP})
LIMIT_PRICED_KINDS = frozenset({Kind.LIMIT, Kind.STOP_LIMIT, Kind.TAKE_PROFIT_LIMIT})


class Tif(IntEnum):
    GTC = 0
    GTD = 1
    IOC = 2
    FOK = 3


class Stp(IntEnum):
    """Self-trade prevention: what happens when an order would trade with its own account.

    The taker's mode decides: CANCEL_NEWEST cancels the taker's remainder, CANCEL_OLDEST the
    resting own order (the taker goes on), CANCEL_BOTH both, NONE lets them trade. A FOK order
    counts only the liquidity it could take before its mode would stop it.
    """

    CANCEL_NEWEST = 0
    CANCEL_OLDEST = 1
    CANCEL_BOTH = 2
    NONE = 3


class Reason:
    """Reason codes of rejections and cancels (strings on the wire)."""

    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    TRADING_HALTED = "TRADING_HALTED"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_TICK_SIZE = "INVALID_TICK_SIZE"
    INVALID_LOT_SIZE = "INVALID_LOT_SIZE"
    BELOW_MIN_QUANTITY = "BELOW_MIN_QUANTITY"
    BELOW_MIN_NOTIONAL = "BELOW_MIN_NOTIONAL"
    MISSING_PRICE = "MISSING_PRICE"
    MISSING_STOP_PRICE = "MISSING_STOP_PRICE"
    INVALID_EXPIRY = "INVALID_EXPIRY"
    INVALID_ORDER = "INVALID_ORDER"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    CLIENT_REQUEST = "CLIENT_REQUEST"
    SELF_TRADE_PREVENTION = "SELF_TRADE_PREVENTION"
    IOC_REMAINDER = "IOC_REMAINDER"
    FOK_UNFILLED = "FOK_UNFILLED"
    MARKET_PROTECTION = "MARKET_PROTECTION"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    QUOTE_BUDGET_EXHAUSTED = "QUOTE_BUDGET_EXHAUSTED"
    LINKED_ORDER_EXECUTED = "LINKED_ORDER_EXECUTED"  # another order of its list filled, triggered or ended
    LINKED_ORDER = "LINKED_ORDER"  # an order of a list cannot be replaced


@dataclass(slots=True)
class Order:
    """An order: the command that places it, then the state the book keeps of it.

    `Book.submit` takes ownership of the object it is given (no copy on the hot
    path): the caller must not change it afterwards.
    """

    order_id: str
    account_id: str
    client_order_id: str
    is_buy: bool
    qty: int
    kind: Kind = Kind.LIMIT
    tif: Tif = Tif.GTC
    price: int | None = None
    stop_price: int | None = None
    trail: int | None = None  # trailing distance in ticks
    trail_ppm: int | None = None  # trailing distance in parts per million of the last price
    display: int | None = None  # iceberg slice in lots
    budget: int | None = None  # market buy: most notional (ticks x lots) it may still spend
    post_only: bool = False
    expire_at: int | None = None
    stp: Stp = Stp.CANCEL_NEWEST
    # state kept by the book
    priority: int = 0
    filled: int = 0
    visible: int = 0  # open quantity shown at its level (an iceberg shows one slice)
    seq: int = 0  # sequence number of the last event about this order
    live: bool = True
    pending: bool = False  # waiting for its trigger, not in a level
    # order lists (new fields go last: stored orders are positional lists)
    group: str | None = None  # the list it belongs to: its orders are `<group>/<n>`
    exits: list[list[int | None]] | None = None  # a bracket's entry: [kind, price, stop] of each exit

    @property
    def leaves(self) -> int:
        return self.qty - self.filled

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


NewOrder = Order  # the command's name where an order is being placed


@dataclass(slots=True)
class Event:
    order_id: str
    account_id: str
    client_order_id: str
    seq: int


@dataclass(slots=True)
class Accepted(Event):
    is_buy: bool
    kind: Kind
    tif: Tif
    qty: int
    price: int | None


@dataclass(slots=True)
class Rejected(Event):
    reason: str
    message: str
    command: str  # SubmitOrder, CancelOrder or ReplaceOrder


@dataclass(slots=True)
class Filled(Event):
    trade_id: str
    is_buy: bool
    price: int
    qty: int
    leaves: int
    maker: bool
    counterparty: str


@dataclass(slots=True)
class Canceled(Event):
    qty: int
    reason: str


@dataclass(slots=True)
class Expired(Event):
    qty: int


@dataclass(slots=True)
class Triggered(Event):
    trigger_price: int


@dataclass(slots=True)
class Replaced(Event):
    qty: int
    price: int | None
    leaves: int
    priority_kept: bool


@dataclass(slots=True)
class TradePrint:
    """Market data: one trade, with the book's market-data sequence number."""

    trade_id: str
    price: int
    qty: int
    aggressor_is_buy: bool
    md_seq: int


@dataclass(slots=True)
class BookDelta:
    """Market data: levels whose visible quantity changed, as (is_bid, price, qty); 0 removes."""

    changes: tuple[tuple[bool, int, int], ...]
    md_seq: int


OrderEvent = Accepted | Rejected | Filled | Canceled | Expired | Triggered | Replaced
AnyEvent = OrderEvent | TradePrint | BookDelta


@dataclass(slots=True)
class Meta:
    """Per-book counters that must survive a restart."""

    md_seq: int = 0
    priority: int = 0
    trade_seq: int = 0
    last_price: int | None = None

"""Settings of the gateway (env prefix ORDERSTREAM_GATEWAY_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orderstream.common.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERSTREAM_GATEWAY_")
    service: ClassVar[str] = "gateway"

    web_host: str = Field("127.0.0.1", description="Interface the public API listens on.")
    web_port: int = Field(8080, ge=0, le=65535, description="Port of the public API, /healthz and /metrics.")
    mongo_database: str = Field("orderstream", description="Database of accounts, keys and order history.")
    orders_database: str = Field(
        "", description="Database of what the gateway writes on the order path: the idempotency "
        "document of every order (`gateway_orders`), signatures seen and rate-limit claims. Empty: "
        "`<mongo_database>_gateway`. Apart from the order history, whose bulk writes would otherwise "
        "hold up an order's own write on a server that locks per database (FerretDB on SQLite)."
    )
    secret_key: str | None = Field(
        None, description="Fernet key that encrypts API secrets; default: one made once under data_dir."
    )
    admin_key_id: str | None = Field(None, description="Bootstrap admin API key id (with ADMIN_SECRET).")
    admin_secret: str | None = Field(None, description="Bootstrap admin API secret; never logged.")
    recv_window_ms: int = Field(5000, ge=100, description="How far a signed timestamp may be from now.")
    resend_within_s: float = Field(
        600, gt=0, description="A repeated client_order_id younger than this sends its command again at "
        "once (in case the first send failed); an older one only if the order history lacks the order. "
        "Keep it well below collateral's ORDERSTREAM_COLLATERAL_ORDER_MEMORY_S."
    )
    orders_per_s: float = Field(
        50.0, gt=0, description="Order rate per API key (token bucket refill), across all gateways."
    )
    orders_burst: int = Field(
        100, ge=1, description="Order burst per API key (token bucket size), across all gateways."
    )
    orders_lease: int = Field(
        16, ge=0, description="Order tokens a gateway takes ahead per key (at most a tenth of the burst), "
        "so an order does not wait for MongoDB; 0: every order takes its token from MongoDB."
    )
    max_orders_in_flight: int = Field(
        256, ge=1, description="The most orders of this gateway out in the order path (sent, first "
        "report not seen yet): at this many (or at the lower bound ORDER_WAIT_TARGET_S keeps under a "
        "slow order path) a new order is refused busy (50302, REST 503 with Retry-After)."
    )
    order_wait_target_s: float = Field(
        0.5, ge=0, description="The first-report latency the gateway steers the orders it lets in to: "
        "while the orders of the last tenth of a second waited longer, the in-flight bound shrinks in "
        "proportion (down to MIN_ORDERS_IN_FLIGHT), else it grows back toward MAX_ORDERS_IN_FLIGHT; "
        "0: the bound stays at MAX_ORDERS_IN_FLIGHT."
    )
    min_orders_in_flight: int = Field(
        32, ge=1, description="The least the in-flight bound shrinks to under a slow order path: with "
        "fewer orders out the chain's batches shrink and an order costs more CPU, so a tighter bound "
        "lowers what the chain carries more than the wait (measured: at 16, 58 orders/s instead of 236)."
    )
    in_flight_expire_s: float = Field(
        30.0, gt=0, description="An order whose first report never comes stops counting after this."
    )
    plain_login: bool = Field(
        True, description="The OrderGateway protocol's auth.login may send the API secret itself "
        "(api_key, api_secret) instead of a signature: only behind TLS (wss://), which the gateway does "
        "not terminate. Off: such a login is refused (40105); signed logins work either way."
    )
    og_orders_per_s: float = Field(
        100.0, gt=0, description="OrderGateway protocol: orders per second per user (account), across "
        "all gateways (orders_per_second)."
    )
    og_orders_burst: int = Field(
        10, ge=1, description="OrderGateway protocol: orders in a burst per user (burst_limit)."
    )
    og_market_data_per_s: float = Field(
        1000.0, gt=0, description="OrderGateway protocol: market-data pushes per second per user on this "
        "gateway (market_data_per_second): pushes over it wait (the newest book of a symbol replaces a "
        "waiting one); the user's requests on /market-data have the same rate, and over it are refused "
        "(42902)."
    )
    max_frame_bytes: int = Field(65536, ge=1024, description="Largest WebSocket frame or REST body.")
    max_json_depth: int = Field(
        32, ge=4, le=200, description="Deepest nesting of arrays and objects in a body or frame."
    )
    ws_send_queue: int = Field(1000, ge=1, description="Messages queued per connection before it is dropped.")
    ws_heartbeat_s: float = Field(20.0, gt=0, description="WebSocket ping interval.")
    fix_port: int = Field(9878, ge=0, le=65535, description="FIX 4.4 order entry over TCP; 0 turns it off.")
    fix_comp_id: str = Field("ORDERSTREAM", min_length=1, description="Our CompID for FIX order entry.")
    fix_heartbeat_s: int = Field(30, ge=1, description="Heartbeat asked of FIX clients that name none.")
    binance_weight_per_min: int = Field(
        6000, ge=1, description="Binance-compatible API: request weight per client address per minute on "
        "this gateway (Binance's REQUEST_WEIGHT); over it a request is refused with -1003 (429)."
    )
    binance_result_wait_s: float = Field(
        3.0, gt=0, description="Binance-compatible API: how long a new order or a cancel waits for its "
        "execution reports (the first one: a rejection is answered as Binance does; RESULT and FULL show "
        "the fills); after it, the answer says what is known."
    )
    binance_trades_kept: int = Field(
        1000, ge=1, le=100_000, description="Binance-compatible API: recent trades kept per symbol "
        "(GET /api/v3/trades, aggTrades)."
    )
    binance_candles_kept: int = Field(
        1500, ge=1, le=100_000, description="Binance-compatible API: one-minute candles kept per symbol "
        "(klines; longer intervals are built from them)."
    )
    binance_listen_key_ttl_s: float = Field(
        3600, gt=0, description="Binance-compatible API: a user data stream's listenKey lives this long "
        "after its last POST or PUT."
    )

    def gateway_database(self) -> str:
        """The database of the order-path collections (`orders_database`, or its default)."""
        return self.orders_database or f"{self.mongo_database}_gateway"


"""The topic catalog: every topic of the public contract, its key, records, writers and readers."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from orderstream.common import records as r
from orderstream.common.record import Record


class KeyKind(StrEnum):
    ACCOUNT = "account"
    SYMBOL = "symbol"
    SCOPE = "scope"  # `ACCOUNT:<id>` or `SYMBOL:<symbol>`


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: KeyKind
    records: tuple[type[Record], ...]
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    compacted: bool = False
    retention_ms: int = 7 * 24 * 3600 * 1000

    def accepts(self, record: Record) -> bool:
        return type(record) in self.records


DAY_MS = 24 * 3600 * 1000
ORDER_EVENT_RECORDS = (
    r.OrderAccepted,
    r.OrderRejected,
    r.OrderFilled,
    r.OrderCanceled,
    r.OrderExpired,
    r.OrderTriggered,
    r.OrderReplaced,
)
ORDER_COMMAND_RECORDS = (r.SubmitOrder, r.CancelOrder, r.ReplaceOrder)
CLIENT_COMMAND_RECORDS = (
    *ORDER_COMMAND_RECORDS,
    r.SubmitBasket,
    r.SubmitOrderList,
    r.SubmitAlgoOrder,
    r.SubmitIndexOrder,
    r.UpdateIndexOrder,
)
COLLATERAL_EVENT_RECORDS = (
    r.Deposited,
    r.Withdrawn,
    r.WithdrawalRejected,
    r.CollateralHeld,
    r.CollateralReleased,
    r.FillSettled,
)

CATALOG: tuple[TopicSpec, ...] = (
    TopicSpec("order.commands", KeyKind.ACCOUNT, CLIENT_COMMAND_RECORDS, ("gateway",), ("collateral",)),
    TopicSpec("order.funded", KeyKind.ACCOUNT, CLIENT_COMMAND_RECORDS, ("collateral",), ("router",)),
    TopicSpec(
        "match.commands",
        KeyKind.SYMBOL,
        (*ORDER_COMMAND_RECORDS, r.SubmitOrderList, r.ExpireOrders),
        ("router", "matcher"),
        ("matcher",),
    ),
    TopicSpec(
        "order.events",
        KeyKind.ACCOUNT,
        ORDER_EVENT_RECORDS,
        ("collateral", "router", "matcher"),
        ("execution",),
        retention_ms=30 * DAY_MS,
    ),
    TopicSpec(
        "execution.reports",
        KeyKind.ACCOUNT,
        (r.ExecutionReport,),
        ("execution",),
        ("gateway", "collector", "collateral", "router"),
    ),
    TopicSpec("execution.positions", KeyKind.ACCOUNT, (r.PositionUpdated,), ("execution",), ("gateway",)),
    TopicSpec("basket.events", KeyKind.ACCOUNT, (r.BasketFilled,), ("router",), ("gateway",)),
    TopicSpec("algo.events", KeyKind.ACCOUNT, (r.AlgoOrderUpdated,), ("router",), ("gateway",)),
    TopicSpec(
        "index.events", KeyKind.ACCOUNT, (r.IndexOrderUpdated,), ("router", "collateral"), ("gateway",)
    ),
    TopicSpec("venue.events", KeyKind.ACCOUNT, ORDER_EVENT_RECORDS, ("router",), ("router",)),
    TopicSpec("algo.schedule", KeyKind.ACCOUNT, (r.SendAlgoSlice,), ("router",), ("router",)),
    TopicSpec("risk.commands", KeyKind.SCOPE, (r.SetKillSwitch,), ("gateway",), ("router", "gateway"),
              compacted=True),
    TopicSpec(
        "collateral.commands",
        KeyKind.ACCOUNT,
        (r.Deposit, r.Withdraw, r.ReleaseParentHold, r.ResizeParentHold),
        ("gateway", "router"),
        ("collateral",),
    ),
    TopicSpec(
        "collateral.events",
        KeyKind.ACCOUNT,
        COLLATERAL_EVENT_RECORDS,
        ("collateral",),
        ("gateway", "collector"),
    ),
    TopicSpec("md.trades", KeyKind.SYMBOL, (r.Trade,), ("matcher",), ("gateway", "execution", "router")),
    TopicSpec("md.book", KeyKind.SYMBOL, (r.BookUpdate,), ("matcher",), ("gateway",)),
    TopicSpec(
        "md.ticker",
        KeyKind.SYMBOL,
        (r.Ticker,),
        ("execution",),
        ("gateway", "router", "execution"),
        compacted=True,
    ),
    TopicSpec("md.candles", KeyKind.SYMBOL, (r.Candle,), ("execution",), ("gateway",)),
    TopicSpec(
        "md.depth", KeyKind.SYMBOL, (r.DepthSnapshot,), ("matcher",), ("gateway", "router"), compacted=True
    ),
    TopicSpec(
        "ref.instruments",
        KeyKind.SYMBOL,
        (r.Instrument,),
        ("admin",),
        ("gateway", "collateral", "router", "matcher", "execution"),
        compacted=True,
    ),
)
BY_NAME = {t.name: t for t in CATALOG}


def spec(name: str) -> TopicSpec:
    return BY_NAME[name]


def dlq_name(topic: str) -> str:
    """The dead-letter topic of `topic`."""
    return f"{topic}.dlq"


def topic_configs(t: TopicSpec) -> dict[str, str]:
    if t.compacted:
        return {"cleanup.policy": "compact"}
    return {"cleanup.policy": "delete", "retention.ms": str(t.retention_ms)}


async def create_topics(bootstrap: str, *, prefix: str = "", partitions: int | None = None) -> list[str]:
    """Create every catalog topic (and its DLQ) that does not exist yet; the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from orderstream.common.settings import DEFAULT_PARTITIONS

    n = partitions or DEFAULT_PARTITIONS
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for t in CATALOG:
            for name, configs in (
                (prefix + t.name, topic_configs(t)),
                (prefix + dlq_name(t.name), {"cleanup.policy": "delete"}),
            ):
                if name not in existing:
                    wanted.append(NewTopic(name, n, 1, topic_configs=configs))
        if wanted:
            await admin.create_topics(wanted)
        names = [prefix + t.name for t in CATALOG if prefix + t.name in existing]  # the new ones have n
        wrong = sorted(
            f"{d['topic']} has {len(d['partitions'])}"
            for d in (await admin.describe_topics(names) if names else [])
            if len(d["partitions"]) != n
        )
        if wrong:  # keys would land on other partitions than co-partitioned tables expect
            raise TopicMismatch(
                f"topics must have {n} partitions: {'; '.join(wrong)}. "
                "Recreate them (locally: make down && make infra-clean)."
            )
        return [t.name for t in wanted]
    finally:
        await admin.close()


class TopicMismatch(RuntimeError):
    """Existing topics do not have the partition count the deployment uses."""

"""The order lifecycle on the real broker: matcher, collateral, router and execution as processes."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from orderstream.common import records as r
from orderstream.common.codec import AvroCodec, schema_ids
from orderstream.common.record import Record
from orderstream.common.records import ALL_RECORDS
from orderstream.common.topics import CATALOG, create_topics, dlq_name
from orderstream.common.trading import TERMINAL
from tests.kafka_tools import Worker, free_port, produce, unique_prefix

CODEC = AvroCodec(ALL_RECORDS, schema_ids(None))
SERVICES = ("matcher", "collateral", "router", "execution")
WATCHED = (
    "order.events",
    "execution.reports",
    "collateral.events",
    "execution.positions",
    "basket.events",
    "md.trades",
    "md.depth",
)
DLQS = tuple(dlq_name(t.name) for t in CATALOG)  # every dead-letter topic: each must stay empty


def instrument(symbol: str, venue: str = "INTERNAL", tick: str = "0.5", lot: str = "0.001") -> r.Instrument:
    base, quote = symbol.split("-")
    return r.Instrument(
        symbol=symbol,
        base_asset=base,
        quote_asset=quote,
        tick_size=Decimal(tick),
        lot_size=Decimal(lot),
        min_quantity=Decimal(lot),
        min_notional=Decimal("1"),
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.002"),
        venue=venue,
        enabled=True,
    )


class Stack:
    """Four services sharing one topic prefix, and a tap on every output topic."""

    def __init__(
        self,
        bootstrap: str,
        tmp: Path,
        router_env: dict[str, str] | None = None,
        env: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.bootstrap, self.tmp = bootstrap, tmp
        self.prefix = unique_prefix()
        self.ports = {s: free_port() for s in SERVICES}
        base = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ORDERSTREAM_TOPIC_PREFIX": self.prefix,
            "ORDERSTREAM_PARTITIONS": "2",
        }
        self.env: dict[str, dict[str, str]] = {}
        for s in SERVICES:
            up = s.upper()
            self.env[s] = {
                **base,
                f"ORDERSTREAM_{up}_WEB_PORT": str(self.ports[s]),
                f"ORDERSTREAM_{up}_DATA_DIR": str(tmp / "faust"),
                f"ORDERSTREAM_{up}_SESSION_TIMEOUT_S": "6",
                f"ORDERSTREAM_{up}_INSTANCE_ID": f"{s}-0",  # static membership, as `make up` runs them
            }
        # no FIX venue unless a test brings its own (tests/fix_executor.py)
        self.env["router"]["ORDERSTREAM_ROUTER_FIX_VENUES"] = "{}"
        self.env["router"].update(router_env or {})
        for service, extra in (env or {}).items():
            self.env[service].update(extra)
        self.workers: dict[str, Worker] = {}
        self.runs: dict[str, int] = defaultdict(int)
        self.seen: dict[str, list[Record]] = defaultdict(list)
        self._tap: asyncio.Task[None] | None = None
        self._n = 0

    def topic(self, name: str) -> str:
        return self.prefix + name

    async def start(self, instruments: list[r.Instrument]) -> None:
        await create_topics(self.bootstrap, prefix=self.prefix, partitions=2)
        await produce(
            self.bootstrap,
            self.topic("ref.instruments"),
            [(i.symbol.encode(), CODEC.encode(i), {}) for i in instruments],
        )
        self._tap = asyncio.get_running_loop().create_task(self._listen())
        await asyncio.gather(*(self.start_service(s) for s in SERVICES))

    async def start_service(self, service: str) -> None:
        self.runs[service] += 1
        w = Worker(
            f"orderstream.{service}", self.env[service], self.tmp / f"{service}-{self.runs[service]}.log"
        ).start()
        self.workers[service] = w
        await w.wait_healthy(self.ports[service], timeout=120)

    def kill(self, service: str) -> None:
        assert self.workers[service].stop(signal.SIGKILL) == -signal.SIGKILL

    async def stop(self) -> None:
        for w in self.workers.values():
            w.stop()
        if self._tap is not None:
            self._tap.cancel()

    async def _listen(self) -> None:
        consumer = AIOKafkaConsumer(
            *[self.topic(t) for t in WATCHED + DLQS],
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            metadata_max_age_ms=1000,
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for tp, msgs in batch.items():
                    name = tp.topic[len(self.prefix) :]
                    for m in msgs:
                        self.seen[name].append(CODEC.decode(m.value) if not name.endswith(".dlq") else m)
        finally:
            await consumer.stop()

    # -- commands ----------------------------------------------------------------

    def ids(self) -> str:
        self._n += 1
        return f"{self._n}-{uuid.uuid4().hex[:6]}"

    async def send(self, topic: str, key: str, *records: Record) -> None:
        await produce(
            self.bootstrap, self.topic(topic), [(key.encode(), CODEC.encode(x), {}) for x in records]
        )

    async def deposit(self, account: str, asset: str, amount: str) -> None:
        await self.send(
            "collateral.commands",
            account,
            r.Deposit(
                command_id=f"dep-{self.ids()}",
                ts_event=time.time_ns(),
                account_id=account,
                asset=asset,
                amount=Decimal(amount),
                source="bank",
            ),
        )

    def order(
        self, account: str, symbol: str, side: str, qty: str, price: str | None, **kw: Any
    ) -> r.SubmitOrder:
        n = self.ids()
        return r.SubmitOrder(
            command_id=f"cmd-{n}",
            ts_event=time.time_ns(),
            account_id=account,
            order_id=f"o-{n}",
            client_order_id=f"c-{n}",
            symbol=symbol,
            side=side,
            order_type=kw.pop("order_type", "LIMIT" if price else "MARKET"),
            time_in_force=kw.pop("time_in_force", "GTC"),
            quantity=Decimal(qty),
            price=None if price is None else Decimal(price),
            **kw,
        )

    async def place(self, o: r.SubmitOrder) -> r.SubmitOrder:
        await self.send("order.commands", o.account_id, o)
        return o

    async def cancel(self, o: r.SubmitOrder) -> None:
        await self.send(
            "order.commands",
            o.account_id,
            r.CancelOrder(
                command_id=f"cx-{self.ids()}",
                ts_event=time.time_ns(),
                account_id=o.account_id,
                order_id=o.order_id,
                client_order_id=o.client_order_id,
                symbol=o.symbol,
            ),
        )

    # -- observations ------------------------------------------------------------------

    def reports(self, order_id: str) -> list[r.ExecutionReport]:
        out = {
            x.event_id: x
            for x in self.seen["execution.reports"]
            if isinstance(x, r.ExecutionReport) and x.order_id == order_id
        }
        return sorted(out.values(), key=lambda x: x.sequence)

    def last_report(self, order_id: str) -> r.ExecutionReport | None:
        reps = self.reports(order_id)
        return reps[-1] if reps else None

    async def until(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            await asyncio.sleep(0.2)
        logs = "\n".join(f"--- {s}\n{w.tail(15)}" for s, w in self.workers.items())
        raise AssertionError(f"timed out waiting for {what}\n{logs}")

    async def status(self, order_id: str, *statuses: str, timeout: float = 60.0) -> r.ExecutionReport:
        def check() -> r.ExecutionReport | None:
            rep = self.last_report(order_id)
            return rep if rep is not None and rep.status.value in statuses else None

        result: r.ExecutionReport = await self.until(f"{order_id} in {statuses}", check, timeout)
        return result

    def balances(self) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
        """(account, asset) -> (free, held) after the newest collateral event of each."""
        out: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
        distinct = {e.event_id: e for e in self.seen["collateral.events"]}
        for e in distinct.values():  # per account the events arrive in order on one partition
            if hasattr(e, "free"):
                out[(e.account_id, e.asset)] = (e.free, e.held)  # type: ignore[attr-defined]
        return out

    def fees(self) -> dict[str, Decimal]:
        total: dict[str, Decimal] = defaultdict(Decimal)
        for e in {e.event_id: e for e in self.seen["collateral.events"]}.values():
            if isinstance(e, r.FillSettled):
                total[e.asset] += e.fee
        return total

    def holds_needed(self, orders: list[r.SubmitOrder]) -> dict[tuple[str, str], Decimal]:
        """(account, asset) -> what the open ones of `orders` must hold, recomputed here: a buy
        price x remaining quantity plus the larger fee (0.2%), a sell its remaining base."""
        need: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        for o in orders:
            rep = self.last_report(o.order_id)
            if rep is not None and rep.status not in TERMINAL:
                assert rep.price is not None
                if o.side == r.Side.BUY:
                    need[(o.account_id, "USD")] += rep.remaining_quantity * rep.price * Decimal("1.002")
                else:
                    need[(o.account_id, "BTC")] += rep.remaining_quantity
        return need

    def dead_letters(self) -> dict[str, int]:
        """Records in each dead-letter topic (none expected)."""
        return {t: len(self.seen[t]) for t in DLQS if self.seen[t]}

    def double_settlements(self) -> list[str]:
        """Fills settled under two different event ids: must be none."""
        keys: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for e in self.seen["collateral.events"]:
            if isinstance(e, r.FillSettled):
                keys[(e.order_id, e.trade_id, e.asset)].add(e.event_id)
        return [json.dumps(k) for k, ids in keys.items() if len(ids) > 1]

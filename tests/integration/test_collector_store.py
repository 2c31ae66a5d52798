"""The order-history collections against the MongoDB-wire server: exact, idempotent, paged."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorDatabase

from orderstream.collector.store import ensure_indexes, write_batch
from orderstream.common import records as r
from orderstream.common.history import action, order_history
from tests.reports import lifecycle, report

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(mongo_url: str) -> AsyncIterator[AsyncIOMotorDatabase[Any]]:
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(mongo_url, serverSelectionTimeoutMS=10_000)
    name = f"c_{uuid.uuid4().hex[:10]}"
    await ensure_indexes(client[name])
    yield client[name]
    await client.drop_database(name)
    client.close()


async def snapshot(db: AsyncIOMotorDatabase[Any]) -> dict[str, list[dict[str, Any]]]:
    return {c: await db[c].find({}).sort("_id", 1).to_list(None)
            for c in ("trader_orders", "order_events", "balance_history")}


async def test_reports_become_exact_documents(db: AsyncIOMotorDatabase[Any]) -> None:
    reports = lifecycle(3)
    out = await write_batch(db, list(reports))
    assert (out.events, out.orders, out.new_orders) == (9, 3, 3)  # one document per order, at sequence 3
    docs = await snapshot(db)
    assert len(docs["order_events"]) == 9 and len(docs["trader_orders"]) == 3
    o0 = next(d for d in docs["trader_orders"] if d["_id"] == "o0")
    assert (o0["status"], o0["filled_quantity"], o0["fees"], o0["sequence"], o0["action"]) == (
        "FILLED", "1", "0.002", 3, "closed")
    assert o0["price"] == "64000.5" and o0["last_event_id"] == "o0:3"
    ev = next(d for d in docs["order_events"] if d["_id"] == "o1:2")
    assert (ev["status"], ev["filled_quantity"], ev["sequence"]) == ("PARTIALLY_FILLED", "0.4", 2)


async def test_the_same_reports_twice_leave_the_same_documents(db: AsyncIOMotorDatabase[Any]) -> None:
    reports = lifecycle(20)
    await write_batch(db, list(reports))
    first = await snapshot(db)
    again = list(reports)
    random.Random(3).shuffle(again)
    out = await write_batch(db, again)
    assert (out.events, out.orders) == (0, 0)
    assert await snapshot(db) == first


async def test_an_older_report_never_overwrites_a_newer_one(db: AsyncIOMotorDatabase[Any]) -> None:
    await write_batch(db, [report(1, 3)])
    await write_batch(db, [report(1, 1)])
    await write_batch(db, [report(1, 2)])
    doc = await db.trader_orders.find_one({"_id": "o1"})
    assert doc is not None and (doc["sequence"], doc["status"]) == (3, "FILLED")
    assert await db.order_events.count_documents({"order_id": "o1"}) == 3


async def test_collateral_events_become_balance_history(db: AsyncIOMotorDatabase[Any]) -> None:
    dep = r.Deposited(event_id="e1", ts_event=1, account_id="acct-1", asset="USD", command_id="d1",
                      amount=Decimal("1000.50"), lot_id="lot-1", source="bank", free=Decimal("1000.50"),
                      held=Decimal(0))
    await write_batch(db, [dep])
    await write_batch(db, [dep])
    docs = await db.balance_history.find({}).to_list(None)
    assert len(docs) == 1 and (docs[0]["type"], docs[0]["amount"], docs[0]["free"]) == (
        "Deposited", "1000.5", "1000.5")


async def test_a_resent_older_balance_event_leaves_the_newer_balance_and_raises_nothing(
    db: AsyncIOMotorDatabase[Any],
) -> None:
    """Collateral sends a redelivered command's events again, after newer ones (a router restart does
    it): a conditional upsert that fails as a duplicate key made FerretDB answer without nModified and
    pymongo raise KeyError, and the event was dead-lettered."""
    def held(seq: int, free: str) -> r.CollateralHeld:
        return r.CollateralHeld(event_id=f"h{seq}", ts_event=seq, account_id="acct-2", asset="USD",
                                order_id="o", amount=Decimal(1), free=Decimal(free), held=Decimal(1),
                                sequence=seq)

    await write_batch(db, [held(2, "8")])
    for again in (held(1, "9"), held(2, "8")):
        await write_batch(db, [again])
    doc = await db.balances.find_one({"_id": "acct-2|USD"})
    assert doc is not None and (doc["sequence"], doc["free"]) == (2, "8")
    await write_batch(db, [held(3, "7")])
    doc = await db.balances.find_one({"_id": "acct-2|USD"})
    assert doc is not None and (doc["sequence"], doc["free"]) == (3, "7")


async def test_history_is_newest_first_filtered_and_paged(db: AsyncIOMotorDatabase[Any]) -> None:
    base = 1_700_000_000_000_000_000
    reports = [report(o, 1, account="A" if o % 2 else "B", symbol="BTC-USD" if o % 3 else "ETH-USD", ts=base)
               for o in range(30)]
    await write_batch(db, [*reports, report(5, 3, account="A", ts=base)])
    page = await order_history(db, "A", limit=4)
    assert [d["_id"] for d in page.orders] == ["o29", "o27", "o25", "o23"]
    seen = [d["_id"] for d in page.orders]
    while page.next_cursor:
        page = await order_history(db, "A", limit=4, before=page.next_cursor)
        seen += [d["_id"] for d in page.orders]
    assert seen == [f"o{o}" for o in range(29, 0, -2)]  # every order of A exactly once
    eth = await order_history(db, "A", symbol="ETH-USD")
    assert {d["_id"] for d in eth.orders} == {f"o{o}" for o in range(1, 30, 2) if o % 3 == 0}
    filled = await order_history(db, "A", status="FILLED")
    assert [d["_id"] for d in filled.orders] == ["o5"]
    window = await order_history(db, "A", since=datetime.fromtimestamp((base + 20_000_000) / 1e9, UTC))
    assert all(d["ts_ns"] >= base + 20_000_000 for d in window.orders) and window.orders
    assert not (await order_history(db, "nobody")).orders


def test_action_names_the_transition() -> None:
    assert [action(report(1, s)) for s in (1, 2, 3)] == ["new", "updated", "closed"]

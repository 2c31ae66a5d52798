"""The traders' read model in MongoDB: the collections the collector writes and the gateway reads,
and the read queries: order history (newest first, paged), open orders (paged) and balances.

Decimals are stored as strings: exact, and stored the same by MongoDB and by FerretDB (which has no
Decimal128). Times as a BSON date (milliseconds, for queries and TTLs) plus the exact nanoseconds in
`ts_ns`. Both services share this module and the topics, never each other's code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from motor.motor_asyncio import AsyncIOMotorDatabase

from orderstream.common import records as r
from orderstream.common.record import Record
from orderstream.common.trading import TERMINAL

ORDERS = "trader_orders"  # one document per order, its latest state (`_id` = order id)
ACCOUNT_BALANCES = "balances"  # one document per account and asset, `_id` = `<account>|<asset>`
MAX_PAGE = 500
_NS_MAX = 2**63 - 1  # the cursor's time is a MongoDB 64-bit integer
MAX_OPEN_PAGE = 1000
LIVE = ("NEW", "ACCEPTED", "PARTIALLY_FILLED", "TRIGGERED", "REPLACED")


def balance_key(account_id: str, asset: str) -> str:
    """`_id` of an account's balance of one asset (`balances`); account ids never hold `|`."""
    return f"{account_id}|{asset}"


def plain(value: Any) -> Any:
    """A value as stored: decimals as normalized strings, enums as their names."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, StrEnum):
        return str(value)
    return value


def when(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC)


def action(report: r.ExecutionReport) -> str:
    """new, updated or closed: what this report did to the trader's order."""
    if report.status in TERMINAL:
        return "closed"
    return "new" if report.sequence <= 1 else "updated"


def fields_of(rec: Record) -> dict[str, Any]:
    return {k: plain(v) for k, v in rec if k != "ts_event"}


def order_document(report: r.ExecutionReport) -> dict[str, Any]:
    """The latest state of an order (`trader_orders`, _id = order id)."""
    doc = fields_of(report)
    doc.pop("event_id")
    doc.update(_id=report.order_id, ts=when(report.ts_event), ts_ns=report.ts_event,
               action=action(report), last_event_id=report.event_id)
    return doc


@dataclass(frozen=True)
class Page:
    orders: list[dict[str, Any]]
    next_cursor: str | None  # pass back as `before` for the next (older) page


def parse_cursor(before: str) -> tuple[int, str]:
    """A page cursor `<ts_ns>:<order_id>` as (ts_ns, order_id); ValueError naming the form otherwise."""
    ts_ns, _, order_id = before.partition(":")
    if not (ts_ns.isascii() and ts_ns.isdigit() and int(ts_ns) <= _NS_MAX and order_id):
        raise ValueError("not a page cursor: pass back the `next` of the previous page (<ts_ns>:<order_id>)")
    return int(ts_ns), order_id


async def order_history(
    db: AsyncIOMotorDatabase[Any], account_id: str, *, symbol: str | None = None,
    status: str | None = None, since: datetime | None = None, until: datetime | None = None,
    limit: int = 50, before: str | None = None,
) -> Page:
    """The account's orders by last change, newest first; `before` is the cursor of the previous page."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1..{MAX_PAGE}")
    query: dict[str, Any] = {"account_id": account_id}
    if symbol:
        query["symbol"] = symbol
    if status:
        query["status"] = status
    window: dict[str, Any] = {}
    if since is not None:
        window["$gte"] = int(since.timestamp() * 1e9)
    if until is not None:
        window["$lt"] = int(until.timestamp() * 1e9)
    if before is not None:
        ts_ns, order_id = parse_cursor(before)
        query["$or"] = [{"ts_ns": {"$lt": ts_ns}}, {"ts_ns": ts_ns, "_id": {"$lt": order_id}}]
    if window:
        query["ts_ns"] = window
    docs = await db[ORDERS].find(query).sort([("ts_ns", -1), ("_id", -1)]).limit(limit + 1).to_list(None)
    more = len(docs) > limit
    docs = docs[:limit]
    cursor = f"{docs[-1]['ts_ns']}:{docs[-1]['_id']}" if more and docs else None
    return Page(docs, cursor)


async def open_orders(db: AsyncIOMotorDatabase[Any], account_id: str, *, limit: int = MAX_OPEN_PAGE,
                      after: str | None = None) -> Page:
    """The account's open orders by order id; `after` is the cursor of the previous page."""
    if not 1 <= limit <= MAX_OPEN_PAGE:
        raise ValueError(f"limit must be 1..{MAX_OPEN_PAGE}")
    query: dict[str, Any] = {"account_id": account_id, "status": {"$in": list(LIVE)}}
    if after is not None:
        query["_id"] = {"$gt": after}
    docs = await db[ORDERS].find(query).sort("_id", 1).limit(limit + 1).to_list(None)
    more = len(docs) > limit
    docs = docs[:limit]
    return Page(docs, docs[-1]["_id"] if more else None)


async def balances(db: AsyncIOMotorDatabase[Any], account_id: str) -> dict[str, dict[str, str]]:
    """Free and held per asset, as the collector last stored them: an `_id` range, no scan."""
    first = balance_key(account_id, "")
    docs = db[ACCOUNT_BALANCES].find({"_id": {"$gte": first, "$lt": first[:-1] + "}"}})  # "}" follows "|"
    return {d["asset"]: {"free": d["free"], "held": d["held"]} async for d in docs}

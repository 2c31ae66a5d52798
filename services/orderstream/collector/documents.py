"""Execution reports and collateral events as MongoDB documents (pure: no I/O).

Decimals are stored as strings: exact, and stored the same by MongoDB and by
FerretDB (which has no Decimal128). Times as a BSON date (milliseconds, for
queries and TTLs) plus the exact nanoseconds in `ts_ns`.
"""

from __future__ import annotations

from typing import Any

from orderstream.common import records as r
from orderstream.common.history import balance_key, fields_of, plain, when
from orderstream.common.record import Record


def event_document(report: r.ExecutionReport) -> dict[str, Any]:
    """One report as it happened (`order_events`, _id = event id)."""
    doc = fields_of(report)
    doc.update(_id=report.event_id, ts=when(report.ts_event), ts_ns=report.ts_event)
    return doc


def balance_document(event: Record) -> dict[str, Any]:
    """One collateral event (`balance_history`, _id = event id)."""
    doc = fields_of(event)
    doc.update(_id=doc.pop("event_id"), type=type(event).__name__,
               ts=when(event.ts_event), ts_ns=event.ts_event)  # type: ignore[attr-defined]
    return doc


def balance_state_document(event: Record) -> dict[str, Any]:
    """An account's balance of one asset after `event` (`balances`, _id = `<account>|<asset>`)."""
    e: Any = event
    return {"_id": balance_key(e.account_id, e.asset), "account_id": e.account_id, "asset": e.asset,
            "free": plain(e.free), "held": plain(e.held), "sequence": e.sequence,
            "ts": when(e.ts_event), "ts_ns": e.ts_event, "event_id": e.event_id}


def latest_per_balance(events: list[Record]) -> list[Record]:
    """Of the balance-changing events of a batch (in offset order), the newest per account and asset:
    the highest per-account sequence; events from before the sequence (0) by time, the later of a tie."""
    best: dict[str, Any] = {}
    for e in events:
        if not hasattr(e, "free"):
            continue  # a refused withdrawal changes no balance
        key = balance_key(e.account_id, e.asset)  # type: ignore[attr-defined]
        cur = best.get(key)
        if cur is None or (e.sequence, e.ts_event) >= (cur.sequence, cur.ts_event):  # type: ignore[attr-defined]
            best[key] = e
    return list(best.values())


def latest_per_order(reports: list[r.ExecutionReport]) -> list[r.ExecutionReport]:
    """Of several reports for one order in a batch, the one with the highest sequence."""
    best: dict[str, r.ExecutionReport] = {}
    for rep in reports:
        cur = best.get(rep.order_id)
        if cur is None or rep.sequence > cur.sequence:
            best[rep.order_id] = rep
    return list(best.values())

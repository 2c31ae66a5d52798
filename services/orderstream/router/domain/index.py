"""An index order's rounds: child buys fitted to the books and to the collateral left; fills back. No I/O.

The router keeps one document per index order. A round is planned when no child of the previous
round is open: `plan` fits the collateral left (collateral amount - spent: nothing is committed
then) to the books with `Pricing.LIMIT` (common/index.py), so the children together can never
cost more than the pool collateral holds, and sends one IOC limit buy per leg that lacks
quantity, at the worst ask level the fit walked. Child ids are `<index id>/<n>`, `n` counting
children over the rounds: child `n` belongs to leg `n % len(legs)`. Fills are allocated to their
leg (`on_child_report`); what is left is carried over to the next round. A new round waits until
every book the last round sent a child into has a snapshot taken after that child ended: an older
one still shows what the child took (the snapshots come once a second), and a child that bought
less than the book showed was sent against a snapshot already stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.basket import child_id, ioc_child
from orderstream.common.index import (
    COMPLETED,
    WORKING,
    Asks,
    Fit,
    Leg,
    Limit,
    Pricing,
    fit,
    units_done,
)
from orderstream.common.trading import QUANTUM, TERMINAL

Books = Mapping[str, tuple[int, Asks]]  # symbol -> (when the depth snapshot was taken, its asks)


def open_index(cmd: r.SubmitIndexOrder, step: Decimal, partition: int) -> dict[str, Any]:
    """The document of a new index order (`partition`: its key's, for the router's timer steps)."""
    return {
        "order_id": cmd.order_id,
        "client_order_id": cmd.client_order_id,
        "account_id": cmd.account_id,
        "asset": cmd.asset,
        "collateral": str(cmd.collateral_amount),
        "spent": "0",
        "step": str(step),
        "status": WORKING,
        "reason": None,
        "rounds": 0,
        "sent": 0,  # child orders created
        "children": {},  # child id -> [leg, seq, filled, notional, fees, done, most it can cost]
        "md": {},  # symbol -> the later of the snapshot the last round used and its child end (matcher time)
        "legs": [
            {
                "symbol": leg.symbol,
                "weight": str(leg.weight),
                "cap": _text(leg.price_cap),
                "filled": "0",
                "notional": "0",
                "fees": "0",
            }
            for leg in cmd.legs
        ],
        "seq": 0,
        "p": partition,
    }


def legs_of(doc: dict[str, Any]) -> list[Leg]:
    return [
        Leg(
            x["symbol"],
            Decimal(x["weight"]),
            None if x["cap"] is None else Decimal(x["cap"]),
            Decimal(x["filled"]),
        )
        for x in doc["legs"]
    ]


def left(doc: dict[str, Any]) -> Decimal:
    return Decimal(doc["collateral"]) - Decimal(doc["spent"])


def open_children(doc: dict[str, Any]) -> int:
    return sum(1 for c in doc["children"].values() if not c[5])


def books_moved(doc: dict[str, Any], books: Books) -> bool:
    """Whether every book the last round sent a child into has a snapshot taken after that child ended
    (see the module doc): both times are the matcher's, the snapshot's and the child's last report's."""
    return all(symbol in books and books[symbol][0] > seen for symbol, seen in doc["md"].items())


def plan(
    doc: dict[str, Any],
    books: Books,
    instruments: Mapping[str, r.Instrument],
    max_quantity: Decimal | None,
    ts: int,
) -> tuple[list[r.SubmitOrder], Fit]:
    """The next round's child orders (none: nothing fits now), recorded in `doc`. Only between rounds."""
    assert doc["status"] == WORKING and open_children(doc) == 0
    doc["children"] = {}  # every fill of theirs is allocated to its leg; a late repeat is ignored
    legs = legs_of(doc)
    asks = {symbol: levels for symbol, (_, levels) in books.items()}
    fitted = fit(legs, left(doc), asks, instruments, Pricing.LIMIT, max_quantity)
    doc["reason"] = None
    if fitted.units == units_done(legs, Decimal(doc["step"])):
        doc["reason"] = fitted.limited_by.value
        if fitted.limited_by == Limit.FUNDS:  # the smallest child order costs more than what is left
            doc["status"] = COMPLETED
        return [], fitted
    doc["rounds"] += 1
    doc["sent"] += sum(1 for lf in fitted.legs if lf.quantity)  # told to collateral with ReleaseParentHold
    n0 = (doc["rounds"] - 1) * len(legs)
    children, md = [], {}
    for i, lf in enumerate(fitted.legs):
        if lf.quantity == 0:
            continue
        assert lf.limit_price is not None
        n = n0 + i
        oid = child_id(doc["order_id"], n)
        doc["children"][oid] = [i, 0, "0", "0", "0", False, str(lf.cost)]
        md[lf.symbol] = books[lf.symbol][0]
        # its command id is deterministic: a child sent again is the same command to the venue
        children.append(ioc_child(doc, n, oid, ts, lf.symbol, r.Side.BUY, lf.quantity, lf.limit_price))
    doc["md"] = md
    return children, fitted


def on_child_report(doc: dict[str, Any], rep: r.ExecutionReport) -> bool:
    """Allocate one child report to its leg; False when it was already seen (or is no child of `doc`)."""
    child = doc["children"].get(rep.order_id)
    if child is None or rep.sequence <= child[1]:
        return False
    leg = doc["legs"][child[0]]
    child[1] = rep.sequence
    if rep.last_fill_quantity is not None and rep.last_fill_price is not None and rep.trade_id is not None:
        notional = rep.last_fill_price * rep.last_fill_quantity
        leg["filled"] = str(Decimal(leg["filled"]) + rep.last_fill_quantity)
        leg["notional"] = str(Decimal(leg["notional"]) + notional)
        child[2] = str(Decimal(child[2]) + rep.last_fill_quantity)
        child[3] = str(Decimal(child[3]) + notional)
        doc["spent"] = str(Decimal(doc["spent"]) + notional)
    paid = rep.fees - Decimal(child[4])  # cumulative on the report: what this report added
    if paid:
        child[4] = str(rep.fees)
        leg["fees"] = str(Decimal(leg["fees"]) + paid)
        doc["spent"] = str(Decimal(doc["spent"]) + paid)
    if rep.status in TERMINAL:
        child[5] = True
        doc["md"][leg["symbol"]] = max(doc["md"].get(leg["symbol"], 0), rep.ts_event)
    return True


def committed(doc: dict[str, Any]) -> Decimal:
    """What the open children may still cost: the most each can cost, less what it has cost."""
    return sum(
        (Decimal(c[6]) - Decimal(c[3]) - Decimal(c[4]) for c in doc["children"].values() if not c[5]),
        Decimal(0),
    )


def update(doc: dict[str, Any], amount: Decimal) -> Decimal:
    """Set the collateral amount, never below what is spent and what open children may still cost
    (they were planned within the old amount); the amount taken."""
    taken = max(amount, Decimal(doc["spent"]) + committed(doc))
    doc["collateral"] = str(taken)
    if doc["status"] == COMPLETED:  # more collateral: rounds go on
        doc["status"] = WORKING
    return taken


def progress(doc: dict[str, Any], ts: int) -> r.IndexOrderUpdated:
    """The event of the document as it stands, with the next sequence number."""
    doc["seq"] += 1
    legs = legs_of(doc)
    return r.IndexOrderUpdated(
        event_id=f"{doc['order_id']}:index:{doc['seq']}",
        ts_event=ts,
        account_id=doc["account_id"],
        order_id=doc["order_id"],
        client_order_id=doc["client_order_id"],
        sequence=doc["seq"],
        status=doc["status"],
        reason=doc["reason"],
        asset=doc["asset"],
        collateral_amount=Decimal(doc["collateral"]),
        spent=Decimal(doc["spent"]),
        left=left(doc),
        units=units_done(legs, Decimal(doc["step"])),
        rounds=doc["rounds"],
        open_children=open_children(doc),
        legs=[
            r.IndexLegProgress(
                symbol=x["symbol"],
                weight=Decimal(x["weight"]),
                filled_quantity=Decimal(x["filled"]),
                average_price=(Decimal(x["notional"]) / Decimal(x["filled"])).quantize(QUANTUM)
                if Decimal(x["filled"])
                else None,
                fees=Decimal(x["fees"]),
            )
            for x in doc["legs"]
        ],
    )


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


class Rate:
    """A venue's order rate: `per_s` child orders a second, at most `per_s` (one second's worth) at once."""

    def __init__(self, per_s: float) -> None:
        self.per_s = per_s
        self.tokens = per_s
        self.at: float | None = None

    def room(self, n: int, now: float) -> bool:
        """Whether `n` orders may go now."""
        if self.at is not None:
            self.tokens = min(self.per_s, self.tokens + (now - self.at) * self.per_s)
        self.at = now
        return n <= self.tokens

    def take(self, n: int, now: float) -> bool:
        """Take `n` orders' worth now, all or none."""
        if not self.room(n, now):
            return False
        self.tokens -= n
        return True

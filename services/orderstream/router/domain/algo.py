"""TWAP and VWAP parent orders: the slice schedule, slice sizes, fills allocated back, benchmarks. No I/O.

A parent's document holds its schedule: slice k is due at start_at + k x interval, for
k < slices (the last one at or before end_at). Slice k is decided once (the router stores
the decision, keyed by the slice, before the child is sent), so a restarted router picks
the schedule up at `next` and never sends a slice twice. A slice due while the router was
down is merged into the next one it decides: the child takes what the schedule says should
be done by then.

One child at a time, immediate-or-cancel at the limit price (market for an unpriced sell):
nothing of the parent rests on a book, a slice's unfilled part is carried to the next slice,
and the children never commit more than what is left of the parent, which is what the
parent's collateral pool covers.

- TWAP: by slice k the children should have filled quantity x (k+1) / slices (down to the
  lot size; the last slice asks for the rest).
- VWAP: each slice takes `participation` x the volume others traded since the last slice.
- A participation cap, given to a TWAP, bounds its slices the same way.

Benchmarks of the window so far, from the symbol's trades (`Tape` entries (ts, price, qty)):
the time-weighted price (each trade price held until the next trade; the window opens at the
last price before it when one is known) and the volume-weighted price.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.basket import ioc_child
from orderstream.common.trading import QUANTUM, TERMINAL, ZERO

MS = 1_000_000
Tick = tuple[int, Decimal, Decimal]  # a trade: (ts ns, price, quantity)
WORKING = r.AlgoStatus.WORKING.value


def slice_count(start_at: int, end_at: int, interval_ns: int) -> int:
    """Slices of a window: one at start_at and one per interval after it, up to end_at."""
    return (end_at - start_at) // interval_ns + 1


def open_algo(cmd: r.SubmitAlgoOrder) -> dict[str, Any]:
    """The document of a new parent order: nothing sent, slice 0 due at start_at."""
    interval = cmd.slice_interval_ms * MS
    return {
        "account_id": cmd.account_id,
        "order_id": cmd.order_id,
        "client_order_id": cmd.client_order_id,
        "symbol": cmd.symbol,
        "side": cmd.side.value,
        "algo": cmd.algo.value,
        "quantity": str(cmd.quantity),
        "limit_price": None if cmd.limit_price is None else str(cmd.limit_price),
        "participation": None if cmd.participation is None else str(cmd.participation),
        "start_at": cmd.start_at,
        "end_at": cmd.end_at,
        "interval": interval,
        "slices": slice_count(cmd.start_at, cmd.end_at, interval),
        "next": 0,  # the next slice to decide
        "sent": 0,  # children sent
        "filled": "0",
        "notional": "0",
        "filled_at_slice": "0",  # filled when the last slice was decided (own volume since then)
        "last_slice_at": None,
        "open": None,  # the child under way: {"order_id", "filled", "seq"}
        "status": WORKING,
        "cancel": None,  # reason of a cancel asked for while a child was under way
        "reason": None,
        "seq": 0,
        "command_ts": cmd.ts_event,
    }


def slice_at(doc: dict[str, Any], k: int) -> int:
    return int(doc["start_at"]) + k * int(doc["interval"])


def next_due(doc: dict[str, Any]) -> int | None:
    """When the next slice is due; None when none is left or the parent is not working."""
    if doc["status"] != WORKING or doc["cancel"] or doc["next"] >= doc["slices"]:
        return None
    return slice_at(doc, doc["next"])


def is_due(doc: dict[str, Any], now: int) -> bool:
    """Whether slice `next` can be decided now: due, and no child under way."""
    due = next_due(doc)
    return due is not None and due <= now and doc["open"] is None


def _lots(quantity: Decimal, lot: Decimal) -> Decimal:
    return (quantity / lot).to_integral_value(rounding=ROUND_DOWN) * lot if quantity > 0 else ZERO


def plan_slice(
    doc: dict[str, Any], now: int, market_volume: Decimal, lot: Decimal, min_quantity: Decimal
) -> tuple[int, Decimal, str | None]:
    """(slice index, child quantity, why nothing) for the slice decided at `now`.

    `market_volume`: the symbol's traded volume since the last slice (this parent's own fills
    included; they are taken out here). The index is the latest slice due by `now`: slices
    missed while the router was down are merged into it.
    """
    k = min((now - int(doc["start_at"])) // int(doc["interval"]), doc["slices"] - 1)
    k = max(k, doc["next"])
    quantity, filled = Decimal(doc["quantity"]), Decimal(doc["filled"])
    remaining = quantity - filled
    if doc["algo"] == r.AlgoType.TWAP.value:
        last = k == doc["slices"] - 1
        target = quantity if last else _lots(quantity * (k + 1) / doc["slices"], lot)
        want = min(target - filled, remaining)
    else:
        want = remaining
    reason = None
    if doc["participation"] is not None:
        own = filled - Decimal(doc["filled_at_slice"])
        others = max(market_volume - own, ZERO)
        cap = _lots(Decimal(doc["participation"]) * others, lot)
        if cap < want:
            want, reason = cap, "PARTICIPATION_CAP"
    want = _lots(want, lot)
    if want < min_quantity or want <= 0:
        return k, ZERO, reason or ("AHEAD_OF_SCHEDULE" if remaining > 0 else "FILLED")
    return k, want, None


def child_order(doc: dict[str, Any], k: int, quantity: Decimal, ts: int) -> r.SubmitOrder:
    """Child `<parent>/<k>`: IOC at the limit price, or a market order (an unpriced sell)."""
    price = None if doc["limit_price"] is None else Decimal(doc["limit_price"])
    return ioc_child(doc, k, f"algo:{doc['order_id']}:{k}", ts, doc["symbol"], r.Side(doc["side"]), quantity,
                     price)


def sliced(
    doc: dict[str, Any], k: int, child: r.SubmitOrder | None, now: int, why: str | None = None
) -> None:
    """Record slice k as decided: its child if one was sent, else `why` not."""
    doc["reason"] = why
    doc["next"] = k + 1
    doc["last_slice_at"] = now
    doc["filled_at_slice"] = doc["filled"]
    if child is not None:
        doc["sent"] += 1
        doc["open"] = {"order_id": child.order_id, "filled": "0", "seq": 0}
    finish_if_over(doc)


def on_child_report(doc: dict[str, Any], rep: r.ExecutionReport) -> bool:
    """Allocate a child's report to the parent; False when it was seen already or is not the open child."""
    child = doc["open"]
    if child is None or child["order_id"] != rep.order_id or rep.sequence <= child["seq"]:
        return False
    child["seq"] = rep.sequence
    if rep.last_fill_quantity is not None and rep.last_fill_price is not None:
        child["filled"] = str(Decimal(child["filled"]) + rep.last_fill_quantity)
        doc["filled"] = str(Decimal(doc["filled"]) + rep.last_fill_quantity)
        doc["notional"] = str(Decimal(doc["notional"]) + rep.last_fill_quantity * rep.last_fill_price)
    if rep.status in TERMINAL:
        doc["open"] = None
        if doc["cancel"]:
            doc["status"], doc["reason"] = r.AlgoStatus.CANCELED.value, doc["cancel"]
        finish_if_over(doc)
    return True


def finish_if_over(doc: dict[str, Any]) -> None:
    """DONE once all is filled, or once the last slice is decided and its child has ended."""
    if doc["status"] != WORKING or doc["open"] is not None:
        return
    if Decimal(doc["filled"]) >= Decimal(doc["quantity"]):
        doc["status"], doc["reason"] = r.AlgoStatus.DONE.value, "FILLED"
    elif doc["next"] >= doc["slices"]:
        doc["status"], doc["reason"] = r.AlgoStatus.DONE.value, "WINDOW_ENDED"


def cancel(doc: dict[str, Any], reason: str = "CANCELED") -> bool:
    """Stop slicing; the parent ends now, or when its child under way ends. False if it already ended."""
    if doc["status"] != WORKING or doc["cancel"]:
        return False
    if doc["open"] is None:
        doc["status"], doc["reason"] = r.AlgoStatus.CANCELED.value, reason
    else:
        doc["cancel"] = reason
    return True


def ended(doc: dict[str, Any]) -> bool:
    return bool(doc["status"] != WORKING)


def benchmarks(tape: Sequence[Tick], start: int, now: int) -> tuple[Decimal | None, Decimal | None]:
    """(TWAP, VWAP) of the trades of `tape` (oldest first) over [start, now]; None without a trade."""
    before = None
    inside: list[Tick] = []
    for tick in tape:
        if tick[0] < start:
            before = tick
        elif tick[0] <= now:
            inside.append(tick)
    volume = sum((q for _, _, q in inside), ZERO)
    vwap = (sum((p * q for _, p, q in inside), ZERO) / volume).quantize(QUANTUM) if volume else None
    steps = ([(start, before[1])] if before is not None else []) + [(t, p) for t, p, _ in inside]
    if not steps:
        return None, vwap
    t0 = steps[0][0]
    if now <= t0:
        return steps[-1][1], vwap
    area = ZERO
    for (t, p), nxt in zip(steps, [*steps[1:], (now, ZERO)], strict=True):
        area += p * (nxt[0] - t)
    return (area / (now - t0)).quantize(QUANTUM), vwap


def volume_between(tape: Sequence[Tick], after: int, until: int) -> Decimal:
    """Traded quantity with after < ts <= until."""
    return sum((q for t, _, q in tape if after < t <= until), ZERO)


def update(doc: dict[str, Any], tape: Sequence[Tick], now: int, tag: str) -> r.AlgoOrderUpdated:
    """The parent's progress as an event (next sequence number); `tag` makes its id unique."""
    doc["seq"] += 1
    filled = Decimal(doc["filled"])
    twap, vwap = benchmarks(tape, int(doc["start_at"]), min(now, int(doc["end_at"])))
    return r.AlgoOrderUpdated(
        event_id=f"{doc['order_id']}:{doc['seq']}:{tag}",
        ts_event=now,
        account_id=doc["account_id"],
        order_id=doc["order_id"],
        client_order_id=doc["client_order_id"],
        symbol=doc["symbol"],
        side=r.Side(doc["side"]),
        algo=r.AlgoType(doc["algo"]),
        sequence=doc["seq"],
        status=r.AlgoStatus(doc["status"]),
        quantity=Decimal(doc["quantity"]),
        filled_quantity=filled,
        average_price=(Decimal(doc["notional"]) / filled).quantize(QUANTUM) if filled else None,
        window_twap=twap,
        window_vwap=vwap,
        slices_sent=doc["sent"],
        next_slice_at=next_due(doc),
        start_at=int(doc["start_at"]),
        end_at=int(doc["end_at"]),
        reason=doc["reason"],
    )

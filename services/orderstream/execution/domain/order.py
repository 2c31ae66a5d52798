"""The order state machine: a transition table applied event by event, one report per change.

No I/O. `OrderState.apply(event)` checks the event's per-order sequence number
(a repeat changes nothing), looks the move up in `TRANSITIONS` (a move not in
the table raises `IllegalTransition`, which the service dead-letters) and
returns the `ExecutionReport` of the new state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.trading import QUANTUM, ZERO, fee, fee_rate

S = r.OrderStatus
OrderEvent = (
    r.OrderAccepted
    | r.OrderRejected
    | r.OrderFilled
    | r.OrderCanceled
    | r.OrderExpired
    | r.OrderTriggered
    | r.OrderReplaced
)

FILL = "FILL"  # OrderFilled goes to PARTIALLY_FILLED or FILLED by what is left
SAME = "SAME"  # a refused cancel/replace leaves the status as it was
LIVE = (S.ACCEPTED, S.TRIGGERED, S.REPLACED, S.PARTIALLY_FILLED)

TRANSITIONS: dict[tuple[S, str], S | str] = {
    (S.NEW, "OrderAccepted"): S.ACCEPTED,
    (S.NEW, "OrderRejected"): S.REJECTED,
    **{(s, "OrderFilled"): FILL for s in LIVE},
    **{(s, "OrderCanceled"): S.CANCELED for s in LIVE},
    **{(s, "OrderExpired"): S.EXPIRED for s in LIVE},
    **{(s, "OrderReplaced"): S.REPLACED for s in LIVE},
    **{(s, "OrderRejected"): SAME for s in LIVE},
    # a cancel or replace that came too late is refused; the closed order stays as it was
    **{(s, "OrderRejected"): SAME for s in (S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED)},
    (S.ACCEPTED, "OrderTriggered"): S.TRIGGERED,
    (S.REPLACED, "OrderTriggered"): S.TRIGGERED,
}


class IllegalTransition(Exception):
    """An event that the order's state does not allow."""


@dataclass
class Fill:
    """A fill as execution saw it, with its fee."""

    side: r.Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    trade_id: str


@dataclass
class OrderState:
    account_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: r.Side
    order_type: r.OrderType
    quantity: Decimal
    price: Decimal | None
    venue: str | None = None
    status: S = S.NEW
    seq: int = 0
    filled: Decimal = ZERO
    leaves: Decimal = ZERO
    notional: Decimal = ZERO
    fees: Decimal = ZERO

    @classmethod
    def first(cls, e: OrderEvent) -> OrderState:
        """The state an order's first event opens (its accept, or a refusal of its submission)."""
        if isinstance(e, r.OrderAccepted):
            return cls(
                e.account_id,
                e.order_id,
                e.client_order_id,
                e.symbol,
                e.side,
                e.order_type,
                e.quantity,
                e.price,
                e.venue,
                leaves=e.quantity,
            )
        if isinstance(e, r.OrderRejected) and e.rejected_command in ("SubmitOrder", "SubmitBasket"):
            return cls(
                e.account_id,
                e.order_id,
                e.client_order_id,
                e.symbol,
                e.side or r.Side.BUY,
                e.order_type or r.OrderType.LIMIT,
                e.quantity or ZERO,
                e.price,
                leaves=e.quantity or ZERO,
            )
        raise IllegalTransition(f"{type(e).__name__} for order {e.order_id}, which was never accepted")

    def apply(
        self, e: OrderEvent, instrument: r.Instrument | None
    ) -> tuple[r.ExecutionReport | None, Fill | None]:
        """The report of the state after `e` and the fill it carried; (None, None) for a repeat."""
        unsequenced = isinstance(e, r.OrderRejected) and e.sequence == 0
        if not unsequenced and e.sequence <= self.seq:
            return None, None
        move = TRANSITIONS.get((self.status, type(e).__name__))
        if move is None:
            raise IllegalTransition(
                f"{type(e).__name__} (seq {e.sequence}) on {self.status.value} order {self.order_id}"
            )
        if not unsequenced:
            self.seq = e.sequence
        fill = None
        reason = None
        if isinstance(e, r.OrderFilled):
            paid = ZERO
            if instrument is not None:
                paid = fee(e.fill_price * e.fill_quantity, fee_rate(instrument, e.liquidity))
            fill = Fill(self.side, e.fill_quantity, e.fill_price, paid, e.trade_id)
            self.filled += e.fill_quantity
            self.notional += e.fill_price * e.fill_quantity
            self.fees += paid
            self.leaves = e.leaves_quantity
            move = S.FILLED if e.leaves_quantity == 0 else S.PARTIALLY_FILLED
        elif isinstance(e, r.OrderReplaced):
            self.quantity, self.price, self.leaves = e.quantity, e.price, e.leaves_quantity
        elif isinstance(e, r.OrderCanceled):
            reason, self.leaves = e.reason, ZERO
        elif isinstance(e, r.OrderExpired):
            self.leaves = ZERO
        elif isinstance(e, r.OrderRejected):
            reason = e.reason
            if move == S.REJECTED:
                self.leaves = ZERO
        if move != SAME:
            assert isinstance(move, S)
            self.status = move
        return self._report(e, instrument, fill, reason), fill

    def _report(
        self, e: OrderEvent, instrument: r.Instrument | None, fill: Fill | None, reason: str | None
    ) -> r.ExecutionReport:
        average = (self.notional / self.filled).quantize(QUANTUM) if self.filled else None
        liquidity = e.liquidity if isinstance(e, r.OrderFilled) else None
        return r.ExecutionReport(
            event_id=f"{e.event_id}:x",
            ts_event=e.ts_event,
            account_id=self.account_id,
            order_id=self.order_id,
            client_order_id=self.client_order_id,
            symbol=self.symbol,
            sequence=e.sequence if e.sequence else self.seq,
            status=self.status,
            side=self.side,
            order_type=self.order_type,
            quantity=self.quantity,
            price=self.price,
            filled_quantity=self.filled,
            remaining_quantity=self.leaves,
            average_price=average,
            last_fill_price=fill.price if fill else None,
            last_fill_quantity=fill.quantity if fill else None,
            last_liquidity=liquidity,
            trade_id=fill.trade_id if fill else None,
            fees=self.fees,
            fee_asset=instrument.quote_asset if instrument is not None else None,
            reason=reason,
            venue=self.venue,
        )

    @property
    def terminal(self) -> bool:
        return self.status in (S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED)

    def to_doc(self) -> dict[str, Any]:
        # the fields are flat: no `asdict` (it deep-copies every value, 7% of execution's time)
        return {
            f.name: (str(v) if isinstance(v, Decimal) else v.value if hasattr(v, "value") else v)
            for f in _FIELDS
            for v in (getattr(self, f.name),)
        }

    @classmethod
    def from_doc(cls, d: dict[str, Any]) -> OrderState:
        dec = {"quantity", "price", "filled", "leaves", "notional", "fees"}
        values: dict[str, Any] = {k: (Decimal(v) if k in dec and v is not None else v) for k, v in d.items()}
        values["side"], values["order_type"] = r.Side(d["side"]), r.OrderType(d["order_type"])
        values["status"] = S(d["status"])
        return cls(**values)

_FIELDS = fields(OrderState)

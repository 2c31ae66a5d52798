"""The internal venue without I/O: Avro commands in, Avro records out, one book per symbol.

Event ids are `<command_id>:<n>`, so reprocessing a command yields the same
ids and every consumer can drop a repeat.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orderstream.common import records as r
from orderstream.common.basket import list_orders, placed_at_once
from orderstream.common.record import Record
from orderstream.matcher.domain import model as m
from orderstream.matcher.domain.book import Book
from orderstream.matcher.domain.rules import ORDER_TYPES, TIME_IN_FORCE, InstrumentRules, RuleViolation

MatchCommand = r.SubmitOrder | r.SubmitOrderList | r.CancelOrder | r.ReplaceOrder | r.ExpireOrders

ORDER_EVENTS = "order.events"
MD_TRADES = "md.trades"
MD_BOOK = "md.book"


@dataclass(frozen=True)
class Out:
    """One record to send: topic (catalog name), key, record."""

    topic: str
    key: str
    record: Record


class Matcher:
    """Books and instrument rules of the symbols this worker owns."""

    def __init__(self, band_ppm: int = 50_000) -> None:
        self.band_ppm = band_ppm
        self.books: dict[str, Book] = {}
        self.rules: dict[str, InstrumentRules] = {}

    def set_instrument(self, instrument: r.Instrument) -> None:
        self.rules[instrument.symbol] = InstrumentRules.of(instrument)

    def book(self, symbol: str) -> Book:
        b = self.books.get(symbol)
        if b is None:
            b = self.books[symbol] = Book(symbol, band_ppm=self.band_ppm)
        return b

    def handle(self, cmd: MatchCommand, now: int) -> list[Out]:
        """Apply one command; the records it causes, in order."""
        symbol = cmd.symbol
        rules = self.rules.get(symbol)
        if rules is None:
            if isinstance(cmd, r.ExpireOrders):
                return []
            return self._reject(cmd, now, m.Reason.UNKNOWN_SYMBOL, f"unknown symbol {symbol}")
        book = self.book(symbol)
        try:
            if isinstance(cmd, r.SubmitOrder):
                events = book.submit(rules.order(cmd), now)
            elif isinstance(cmd, r.SubmitOrderList):
                orders = [rules.order(o) for o in list_orders(cmd)]  # every order, exits too, is valid
                oco = cmd.contingency == r.ContingencyType.OCO
                if not oco:
                    orders[0].exits = [[int(x.kind), x.price, x.stop_price] for x in orders[1:]]
                events = book.submit_list(cmd.order_id, oco, orders, now)
            elif isinstance(cmd, r.CancelOrder):
                events = book.cancel(cmd.order_id, cmd.account_id, now)
            elif isinstance(cmd, r.ReplaceOrder):
                qty = None if cmd.quantity is None else rules.lots(cmd.quantity)
                price = None if cmd.price is None else rules.ticks(cmd.price)
                events = book.replace(cmd.order_id, cmd.account_id, qty, price, now)
            else:
                events = book.expire(cmd.ts_event)
        except RuleViolation as v:
            return self._reject(cmd, now, v.reason, str(v))
        return list(self._records(cmd, rules, events, now))

    def _reject(self, cmd: MatchCommand, now: int, reason: str, message: str) -> list[Out]:
        """The rejection of a command; of an order list, one for each order it placed."""
        assert not isinstance(cmd, r.ExpireOrders)
        if isinstance(cmd, r.SubmitOrderList):
            return [self._reject_one(o, now, reason, message) for o in placed_at_once(cmd)]
        return [self._reject_one(cmd, now, reason, message)]

    def _reject_one(self, cmd: r.SubmitOrder | r.CancelOrder | r.ReplaceOrder, now: int, reason: str,
                    message: str) -> Out:
        return Out(ORDER_EVENTS, cmd.account_id, r.OrderRejected(
            event_id=f"{cmd.command_id}:0", ts_event=now, account_id=cmd.account_id,
            order_id=cmd.order_id, client_order_id=cmd.client_order_id, symbol=cmd.symbol,
            sequence=0 if not isinstance(cmd, r.SubmitOrder) else 1, reason=reason, message=message,
            rejected_command=type(cmd).__name__, **submitted(cmd),
        ))

    def _records(self, cmd: MatchCommand, rules: InstrumentRules, events: Iterable[m.AnyEvent],
                 now: int) -> Iterable[Out]:
        sym = rules.symbol
        price, qty = rules.price, rules.qty
        for n, e in enumerate(events):
            eid = f"{cmd.command_id}:{n}"
            if isinstance(e, m.TradePrint):
                yield Out(MD_TRADES, sym, r.Trade(
                    trade_id=e.trade_id, ts_event=now, symbol=sym, price=price(e.price), quantity=qty(e.qty),
                    aggressor_side=r.Side.BUY if e.aggressor_is_buy else r.Side.SELL, sequence=e.md_seq))
                continue
            if isinstance(e, m.BookDelta):
                yield Out(MD_BOOK, sym, r.BookUpdate(
                    symbol=sym, ts_event=now, sequence=e.md_seq,
                    changes=[level(bid, price(p), qty(q)) for bid, p, q in e.changes]))
                continue
            cid = e.client_order_id or getattr(cmd, "client_order_id", "")
            head = {"event_id": eid, "ts_event": now, "account_id": e.account_id, "order_id": e.order_id,
                    "client_order_id": cid, "symbol": sym, "sequence": e.seq}
            rec: Record
            if isinstance(e, m.Accepted):
                rec = r.OrderAccepted(**head, side=side(e.is_buy), order_type=ORDER_TYPES[e.kind],
                                      time_in_force=TIME_IN_FORCE[e.tif], quantity=qty(e.qty),
                                      price=None if e.price is None else price(e.price), venue="INTERNAL")
            elif isinstance(e, m.Filled):
                rec = r.OrderFilled(**head, trade_id=e.trade_id, side=side(e.is_buy),
                                    fill_price=price(e.price), fill_quantity=qty(e.qty),
                                    leaves_quantity=qty(e.leaves),
                                    liquidity=r.Liquidity.MAKER if e.maker else r.Liquidity.TAKER,
                                    counterparty_account_id=e.counterparty)
            elif isinstance(e, m.Canceled):
                rec = r.OrderCanceled(**head, canceled_quantity=qty(e.qty), reason=e.reason)
            elif isinstance(e, m.Expired):
                rec = r.OrderExpired(**head, expired_quantity=qty(e.qty))
            elif isinstance(e, m.Triggered):
                rec = r.OrderTriggered(**head, trigger_price=price(e.trigger_price))
            elif isinstance(e, m.Replaced):
                rec = r.OrderReplaced(**head, quantity=qty(e.qty),
                                      price=None if e.price is None else price(e.price),
                                      leaves_quantity=qty(e.leaves), priority_kept=e.priority_kept)
            else:
                placed = cmd
                if isinstance(cmd, r.SubmitOrderList):  # which of its orders
                    placed = next(o for o in list_orders(cmd) if o.order_id == e.order_id)
                rec = r.OrderRejected(**head, reason=e.reason, message=e.message, rejected_command=e.command,
                                      **(submitted(placed) if e.command == "SubmitOrder" else {}))
            yield Out(ORDER_EVENTS, e.account_id, rec)

    def depth(self, symbol: str, limit: int | None = None, now: int = 0) -> r.DepthSnapshot:
        """The visible book of `symbol` at its current market-data sequence number."""
        book = self.book(symbol)
        rules = self.rules[symbol]
        bids, asks = book.depth(limit)
        levels = [level(True, rules.price(p), rules.qty(q)) for p, q in bids]
        levels += [level(False, rules.price(p), rules.qty(q)) for p, q in asks]
        return r.DepthSnapshot(symbol=symbol, ts_event=now, sequence=book.meta.md_seq, levels=levels)


def level(is_bid: bool, price: Decimal, qty: Decimal) -> r.PriceLevel:
    return r.PriceLevel(side=r.BookSide.BID if is_bid else r.BookSide.ASK, price=price, quantity=qty)


def submitted(cmd: MatchCommand) -> dict[str, Any]:
    """The order details a rejection of a submission carries, so its report can describe the order."""
    if not isinstance(cmd, r.SubmitOrder):
        return {}
    return {"side": cmd.side, "order_type": cmd.order_type, "quantity": cmd.quantity, "price": cmd.price}


def side(is_buy: bool) -> r.Side:
    return r.Side.BUY if is_buy else r.Side.SELL

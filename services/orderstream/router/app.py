"""The router worker: order.funded in; risk, venue choice, baskets; match.commands or a venue out.

Wiring only: decode (the template), check risk against the account's exposure,
send the order to the matcher or to an external venue adapter, store once per
source record (common/state.py). Venue events first land on `venue.events` so
that turning them into order events (with this order's sequence numbers) is a
stored, idempotent step like any other.

A venue call and the stored state cannot disagree for good: the intent is stored
before the call (the order's venue document; a cancel's command inside it), the
outcome comes back as a venue event that a stored step applies, and the reconcile
timer asks the venue about every order whose outcome is not known: orders from
before a restart, orders whose call failed ambiguously (no answer: the venue may
have acted), and cancels stored but not answered, which it sends again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from orderstream.common import records as r
from orderstream.common.app import Delivery, Service
from orderstream.common.basket import basket_of, children, list_orders, placed_at_once
from orderstream.common.index import CANCELED, COMPLETED, WORKING, Leg, unit_step
from orderstream.common.index import refused as index_refused
from orderstream.common.mirror import Mirror
from orderstream.common.record import Record
from orderstream.common.rejections import command_rejected, submit_rejected
from orderstream.common.state import Changes, Emit, StateStore
from orderstream.common.topics import CLIENT_COMMAND_RECORDS
from orderstream.router.domain import algo, index
from orderstream.router.domain.basket import finished, on_child_report, open_basket
from orderstream.router.domain.risk import Exposure, Limits
from orderstream.router.fixvenue import FixVenue
from orderstream.router.mockvenue import MockVenue
from orderstream.router.settings import RouterSettings
from orderstream.router.tape import Tape
from orderstream.router.venue import Resilient, VenueAdapter, VenueError, VenueEvent, VenueOrder, reason_of

log = logging.getLogger(__name__)

INTERNAL = "INTERNAL"
ORDER_EVENTS = "order.events"
VENUE_EVENTS = "venue.events"
ALGO_EVENTS = "algo.events"
ALGO_SCHEDULE = "algo.schedule"
INDEX_EVENTS = "index.events"
LOST = 10**9  # venue sequence of an event the router makes up for an order the venue lost
SLICE_RESEND_S = 5.0  # a SendAlgoSlice not applied after this long is sent again (ignored if it was)


def venue_record(ev: VenueEvent, doc: dict[str, Any], venue: str, sequence: int, event_id: str) -> Record:
    """The order event a venue event means, for the order described by its router document."""
    head = {
        "event_id": event_id,
        "ts_event": ev.ts,
        "account_id": doc["account_id"],
        "order_id": ev.order_id,
        "client_order_id": doc["client_order_id"],
        "symbol": doc["symbol"],
        "sequence": sequence,
    }
    price = Decimal(doc["price"]) if doc["price"] is not None else None
    if ev.kind == "ACCEPTED":
        return r.OrderAccepted(
            **head,
            side=r.Side(doc["side"]),
            order_type=r.OrderType(doc["order_type"]),
            time_in_force=r.TimeInForce(doc["tif"]),
            quantity=Decimal(doc["quantity"]),
            price=price,
            venue=venue,
        )
    if ev.kind == "FILLED":
        assert ev.fill_id and ev.quantity is not None and ev.price is not None and ev.leaves is not None
        return r.OrderFilled(
            **head,
            trade_id=ev.fill_id,
            side=r.Side(doc["side"]),
            fill_price=ev.price,
            fill_quantity=ev.quantity,
            leaves_quantity=ev.leaves,
            liquidity=r.Liquidity.TAKER,
            counterparty_account_id=None,
        )
    if ev.kind == "REPLACED":
        assert ev.quantity is not None and ev.leaves is not None
        return r.OrderReplaced(**head, quantity=ev.quantity, price=price if ev.price is None else ev.price,
                               leaves_quantity=ev.leaves, priority_kept=False)
    if ev.kind == "CANCELED":
        return r.OrderCanceled(
            **head, canceled_quantity=ev.quantity or Decimal(0), reason=ev.code or "CANCELED"
        )
    return r.OrderRejected(
        **head,
        reason=reason_of(ev.code),
        message=ev.message,
        rejected_command="SubmitOrder",
        side=r.Side(doc["side"]),
        order_type=r.OrderType(doc["order_type"]),
        quantity=Decimal(doc["quantity"]),
        price=price,
    )


INTENTS: dict[type, str] = {r.CancelOrder: "cancel", r.ReplaceOrder: "replace"}


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _release(doc: dict[str, Any], ts: int, command_id: str | None = None) -> Record:
    """Tell collateral a parent (index order, TWAP/VWAP) is finished: what its pool holds goes back once
    it has seen each of the `sent` children end (the release and the children's reports come on different
    topics). Sent once per parent (a second one, with the same id, would have collateral send its events
    again)."""
    return r.ReleaseParentHold(
        command_id=command_id or f"{doc['order_id']}:release",
        ts_event=ts,
        account_id=doc["account_id"],
        order_id=doc["order_id"],
        reason=doc["status"],
        children=doc.get("sent", 0),
    )


def _resize(doc: dict[str, Any], amount: Decimal, cmd: r.UpdateIndexOrder) -> Record:
    """Tell collateral the index order's collateral amount as the router took it: what the pool holds
    beyond it is released (an increase was held by collateral before the update came here)."""
    return r.ResizeParentHold(
        command_id=f"{cmd.command_id}:resize",
        ts_event=cmd.ts_event,
        account_id=cmd.account_id,
        order_id=cmd.order_id,
        update_command_id=cmd.command_id,
        amount=amount,
    )


def load_exposure(changes: Changes, account_id: str, order_ids: Sequence[str]) -> Exposure:
    """The account's exposure with the open-order entries of `order_ids`: each entry is a
    document of its own (`x|<account>|<order>`), the rules read the totals kept in the
    exposure document."""
    return Exposure.from_doc(changes.get_split(f"x|{account_id}", "open", order_ids))


def store_exposure(changes: Changes, account_id: str, exposure: Exposure, order_ids: Sequence[str]) -> None:
    changes.put_split(f"x|{account_id}", exposure.to_doc(), "open", order_ids)


class RouterWorker:
    def __init__(self, service: Service, settings: RouterSettings) -> None:
        self.service = service
        self.settings = settings
        outputs = {
            name: service.output(name)
            for name in (ORDER_EVENTS, "match.commands", "basket.events", VENUE_EVENTS, "collateral.commands",
                         ALGO_EVENTS, ALGO_SCHEDULE, INDEX_EVENTS)
        }
        self.outputs = outputs
        self.state = StateStore(service, "router-state", outputs, settings.dedupe_window)
        self.instruments = Mirror(service, "ref.instruments", r.Instrument)
        self.kills = Mirror(service, "risk.commands", r.SetKillSwitch)
        self.tickers = Mirror(service, "md.ticker", r.Ticker)
        self.tape = Tape(service, settings.algo_tape_s)
        self.algos: set[str] = set()  # keys of the parents (`g|<account>|<parent>`) the timer looks at
        self.algos_generation = -1
        self.ticked: dict[tuple[str, int], float] = {}  # (parent, slice) -> when its SendAlgoSlice was sent
        self.depth = Mirror(service, "md.depth", r.DepthSnapshot)  # the books index orders are fitted to
        self.rates: dict[str, index.Rate] = {}  # per venue: child orders of index orders
        adapters: list[VenueAdapter] = [MockVenue(name, cfg) for name, cfg in settings.mock_venues.items()]
        self.fix_venues = {
            name: FixVenue(name, cfg, Path(cfg.store or Path(settings.data_dir, "router", "fix", name)))
            for name, cfg in settings.fix_venues.items()
        }
        adapters += self.fix_venues.values()
        self.venues = {
            a.name: Resilient(a, settings.venue_attempts, settings.venue_backoff_s, settings.venue_timeout_s)
            for a in adapters
        }
        self.placing: dict[str, dict[str, Any]] = {}  # venue order docs known to this process
        self.unsure: set[str] = set()  # orders whose place failed ambiguously: ask the venue
        self.cancelling: set[str] = set()  # orders with a cancel call under way
        self.seen_reconnects: dict[str, int] = {}
        service.health_extras.append(
            lambda: {
                "venue_retries": {n: v.retries for n, v in self.venues.items()},
                "venue_calls_in_flight": {n: v.in_flight for n, v in self.venues.items()},
                "venue_orders_in_flight": len(self.placing),
                "venue_orders_unsure": len(self.unsure),
                "fix_sessions": {n: v.health() for n, v in self.fix_venues.items()},
            }
        )

    # -- helpers -------------------------------------------------------------------

    def limits(self, account_id: str) -> Limits:
        lim = self.settings.account_limits.get(account_id, self.settings.limits)
        return Limits(
            lim.max_order_quantity,
            lim.max_order_notional,
            lim.max_open_orders,
            lim.max_position,
            lim.max_daily_loss,
        )

    def venue_of(self, symbol: str) -> str:
        inst = self.instruments.get(symbol)
        return self.settings.venue_map.get(symbol) or (inst.venue if inst is not None else INTERNAL)

    def killed(self, o: r.SubmitOrder) -> str | None:
        for scope, target in (("ACCOUNT", o.account_id), ("SYMBOL", o.symbol)):
            switch = self.kills.get(f"{scope}:{target}")
            if switch is not None and switch.engaged:
                return f"{scope.lower()} {target}"
        return None

    def _route(
        self, changes: Changes, exposure: Exposure, o: r.SubmitOrder, to_place: list[dict[str, Any]]
    ) -> list[Emit]:
        ticker = self.tickers.get(o.symbol)
        refusal = exposure.check(
            o,
            self.limits(o.account_id),
            self.instruments.get(o.symbol),
            ticker.last_price if ticker else None,
            self.killed(o),
        )
        if refusal is not None:
            return [Emit(ORDER_EVENTS, o.account_id, submit_rejected(o, *refusal, "risk"))]
        exposure.opened(o)
        venue = self.venue_of(o.symbol)
        if venue == INTERNAL:
            return [Emit("match.commands", o.symbol, o)]
        if venue not in self.venues:
            exposure.unopened(o.order_id)
            return [
                Emit(
                    ORDER_EVENTS,
                    o.account_id,
                    submit_rejected(o, "UNKNOWN_VENUE", f"no venue {venue}", "risk"),
                )
            ]
        doc = {
            "venue": venue,
            "account_id": o.account_id,
            "order_id": o.order_id,
            "client_order_id": o.client_order_id,
            "symbol": o.symbol,
            "side": o.side.value,
            "order_type": o.order_type.value,
            "tif": o.time_in_force.value,
            "quantity": str(o.quantity),
            "price": None if o.price is None else str(o.price),
            "seq": 0,
            "vseq": 0,
        }
        changes.put(f"v|{o.account_id}|{o.order_id}", doc)
        to_place.append(doc)
        return []

    def _route_list(self, changes: Changes, lst: r.SubmitOrderList) -> list[Emit]:
        """Risk-check every order of a list (a bracket's exits for the entry's whole quantity), then
        send it whole to the internal venue, which links its orders in its own steps."""
        placed = placed_at_once(lst)
        ids = [o.order_id for o in placed]
        exposure = load_exposure(changes, lst.account_id, ids)
        refusal: tuple[str, str] | None = None
        venue = self.venue_of(lst.symbol)
        if venue != INTERNAL:
            refusal = ("LIST_NOT_SUPPORTED",
                       f"order lists trade on the internal venue; {lst.symbol} trades at {venue}")
        ticker = self.tickers.get(lst.symbol)
        for o in list_orders(lst):
            refusal = refusal or exposure.check(o, self.limits(o.account_id), self.instruments.get(o.symbol),
                                                ticker.last_price if ticker else None, self.killed(o))
        if refusal is not None:
            return [Emit(ORDER_EVENTS, lst.account_id, submit_rejected(o, *refusal, "risk")) for o in placed]
        for o in placed:
            exposure.opened(o)
        store_exposure(changes, lst.account_id, exposure, ids)
        if lst.contingency == r.ContingencyType.BRACKET:  # its exits are counted from their first report
            exits = [o.order_id for o in list_orders(lst)[1:]]
            changes.put(f"l|{lst.account_id}|{lst.order_id}", {"exits": exits})
        return [Emit("match.commands", lst.symbol, lst)]

    # -- handlers ------------------------------------------------------------------

    async def on_funded(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, CLIENT_COMMAND_RECORDS)  # what order.funded carries
        for mirror in (self.instruments, self.kills, self.tickers, self.depth):
            await mirror.wait()
        if isinstance(record, r.SubmitIndexOrder | r.UpdateIndexOrder) or (
            isinstance(record, r.CancelOrder)
            and f"i|{record.account_id}|{record.order_id}" in self.state.docs()
        ):
            await self._index_command(record, delivery.partition)
            return
        cmd = record
        if isinstance(cmd, r.SubmitAlgoOrder) or (
            isinstance(cmd, r.CancelOrder | r.ReplaceOrder)
            and f"g|{cmd.account_id}|{cmd.order_id}" in self.state.docs()
        ):
            await self.on_algo_command(cmd, delivery)
            return
        to_place: list[dict[str, Any]] = []
        venue_doc = (
            None
            if isinstance(cmd, r.SubmitOrder | r.SubmitBasket | r.SubmitOrderList)
            else self.state.docs().get(f"v|{cmd.account_id}|{cmd.order_id}")
        )

        def step(changes: Changes) -> list[Emit]:
            if isinstance(cmd, r.CancelOrder | r.ReplaceOrder):
                if venue_doc is None:
                    return [Emit("match.commands", cmd.symbol, cmd)]
                venue = self.venues.get(venue_doc["venue"])
                if isinstance(cmd, r.ReplaceOrder) and (venue is None or not venue.adapter.supports_replace):
                    return [
                        Emit(
                            ORDER_EVENTS,
                            cmd.account_id,
                            command_rejected(
                                cmd,
                                "REPLACE_NOT_SUPPORTED",
                                f"venue {venue_doc['venue']} cannot replace; cancel instead",
                                "venue",
                            ),
                        )
                    ]
                doc = changes.get(f"v|{cmd.account_id}|{cmd.order_id}")
                if doc is not None:  # the intent, stored before the venue is called
                    intent: dict[str, Any] = {"command_id": cmd.command_id, "ts": cmd.ts_event,
                                              "client_order_id": cmd.client_order_id}
                    if isinstance(cmd, r.ReplaceOrder):
                        intent |= {"quantity": _text(cmd.quantity), "price": _text(cmd.price)}
                    doc[INTENTS[type(cmd)]] = intent
                    changes.put(f"v|{cmd.account_id}|{cmd.order_id}", doc)
                return []  # the venue is called after the step; its answer comes back as an event
            if isinstance(cmd, r.SubmitOrderList):
                return self._route_list(changes, cmd)
            orders = children(cmd) if isinstance(cmd, r.SubmitBasket) else [cmd]
            ids = [o.order_id for o in orders]
            exposure = load_exposure(changes, cmd.account_id, ids)
            out: list[Emit] = []
            if isinstance(cmd, r.SubmitBasket):
                changes.put(f"b|{cmd.account_id}|{cmd.order_id}", open_basket(cmd))
            for o in orders:
                out += self._route(changes, exposure, o, to_place)
            store_exposure(changes, cmd.account_id, exposure, ids)
            return out

        applied = await self.state.apply(f"order.funded:{cmd.command_id}", step, delivery.partition)
        if not applied:
            return
        amend = isinstance(cmd, r.CancelOrder | r.ReplaceOrder) and venue_doc is not None
        if to_place or amend:
            await self.state.flush()  # the step is stored before the venue hears of it
        if amend:
            stored = self.state.docs().get(f"v|{cmd.account_id}|{cmd.order_id}")
            if stored is not None and INTENTS[type(cmd)] in stored:
                await self._amend_at_venue(stored, INTENTS[type(cmd)])
        await self._place_all(to_place)

    async def _place_all(self, to_place: list[dict[str, Any]]) -> None:
        """Send orders routed to external venues, once the step that routed them is stored."""
        if to_place:
            await self.state.flush()
        for doc in to_place:
            await self._place(doc)

    # -- index orders (router/domain/index.py) -----------------------------------------

    def _books(self, doc: dict[str, Any]) -> index.Books:
        """The asks of each leg's latest depth snapshot, with when the matcher took it."""
        books: dict[str, tuple[int, list[tuple[Decimal, Decimal]]]] = {}
        for leg in doc["legs"]:
            snap = self.depth.get(leg["symbol"])
            if snap is not None:
                asks = [(x.price, x.quantity) for x in snap.levels if x.side == r.BookSide.ASK]
                books[leg["symbol"]] = (snap.ts_event, asks)
        return books

    def _plan(self, doc: dict[str, Any], ts: int) -> tuple[dict[str, Any], list[r.SubmitOrder]] | None:
        """The document after the next round and the round's children; None when no round is due."""
        books = self._books(doc)
        if doc["status"] != WORKING or index.open_children(doc) or not index.books_moved(doc, books):
            return None
        trial = orjson.loads(orjson.dumps(doc))
        limit = self.limits(doc["account_id"]).max_order_quantity
        children, _ = index.plan(trial, books, self.instruments.latest, limit, ts)
        if not children and (trial["status"], trial["reason"]) == (doc["status"], doc["reason"]):
            return None
        return trial, children

    def _rate_allows(self, children: list[r.SubmitOrder]) -> bool:
        """Take the venues' order-rate budget for `children`, all or none."""
        counts: dict[str, int] = {}
        for c in children:
            counts[self.venue_of(c.symbol)] = counts.get(self.venue_of(c.symbol), 0) + 1
        now = time.monotonic()
        rates = {
            venue: self.rates.setdefault(
                venue, index.Rate(self.settings.venue_order_rate.get(venue, self.settings.index_order_rate))
            )
            for venue in counts
        }
        if any(not rates[v].room(n, now) for v, n in counts.items()):
            return False
        for v, n in counts.items():
            rates[v].take(n, now)
        return True

    def _index_round(
        self, changes: Changes, key: str, doc: dict[str, Any], ts: int, to_place: list[dict[str, Any]]
    ) -> list[Emit]:
        """Store `doc` after its next round, if one is due and the venues' rates allow it (else as given),
        or delete it with its last event once it has ended and no child is open."""
        out: list[Emit] = []
        planned = self._plan(doc, ts)
        if planned is not None and self._rate_allows(planned[1]):
            before, (doc, children) = doc, planned
            if children:
                ids = [c.order_id for c in children]
                exposure = load_exposure(changes, doc["account_id"], ids)
                for c in children:
                    out += self._route(changes, exposure, c, to_place)
                store_exposure(changes, doc["account_id"], exposure, ids)
            elif doc["status"] == WORKING and doc["reason"] != before["reason"]:  # why it waits, once
                out.append(Emit(INDEX_EVENTS, doc["account_id"], index.progress(doc, ts)))
        if doc["status"] != WORKING and not index.open_children(doc):
            return out + self._index_end(changes, key, doc, ts)
        changes.put(key, doc)
        return out

    def _index_end(self, changes: Changes, key: str, doc: dict[str, Any], ts: int) -> list[Emit]:
        """The last event of an index order, and the release of what its pool still holds."""
        changes.delete(key)
        return [
            Emit(INDEX_EVENTS, doc["account_id"], index.progress(doc, ts)),
            Emit("collateral.commands", doc["account_id"], _release(doc, ts)),
        ]

    async def _index_command(
        self, cmd: r.SubmitIndexOrder | r.UpdateIndexOrder | r.CancelOrder, partition: int
    ) -> None:
        key = f"i|{cmd.account_id}|{cmd.order_id}"
        ts = time.time_ns()
        to_place: list[dict[str, Any]] = []

        def step(changes: Changes) -> list[Emit]:
            doc = changes.get(key)
            if isinstance(cmd, r.SubmitIndexOrder):
                if doc is not None:
                    return []
                legs = [Leg(x.symbol, x.weight) for x in cmd.legs]
                if any(self.instruments.get(x.symbol) is None for x in cmd.legs):
                    gone = {"order_id": cmd.order_id, "account_id": cmd.account_id, "status": "REJECTED"}
                    return [Emit(INDEX_EVENTS, cmd.account_id, index_refused(cmd, "UNKNOWN_SYMBOL", ts)),
                            Emit("collateral.commands", cmd.account_id, _release(gone, ts))]
                doc = index.open_index(cmd, unit_step(legs, self.instruments.latest), partition)
                return [Emit(INDEX_EVENTS, cmd.account_id, index.progress(doc, ts)),
                        *self._index_round(changes, key, doc, ts, to_place)]
            if doc is None:  # ended already: what an update may have held more is released again
                gone = {"order_id": cmd.order_id, "account_id": cmd.account_id, "status": "ENDED"}
                return [Emit("collateral.commands", cmd.account_id,
                             _release(gone, ts, f"{cmd.command_id}:release"))]
            out: list[Emit] = []
            if isinstance(cmd, r.UpdateIndexOrder):
                if cmd.refusal is not None:  # collateral could not hold the increase: the amount stays
                    taken, doc["reason"] = Decimal(doc["collateral"]), cmd.refusal
                else:
                    taken, doc["reason"] = index.update(doc, cmd.collateral_amount), None
                out.append(Emit("collateral.commands", cmd.account_id, _resize(doc, taken, cmd)))
                out.append(Emit(INDEX_EVENTS, cmd.account_id, index.progress(doc, ts)))
            elif doc["status"] in (WORKING, COMPLETED):  # a cancel: no next round; the release and the
                doc["status"], doc["reason"] = CANCELED, "CLIENT_REQUEST"  # last event once no child is open
            return out + self._index_round(changes, key, doc, ts, to_place)

        if await self.state.apply(f"order.funded:{cmd.command_id}", step, partition) and to_place:
            await self.state.flush()
            await self._place_all(to_place)

    async def index_rounds(self) -> None:
        """The next round of every index order between rounds whose books have moved (a timer)."""
        app = self.service.app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its type
        if app.rebalancing or not recovery.completed.is_set():
            return
        await self.state.flush()  # what handlers applied is stored before a timer step joins in
        for key, doc in [(k, d) for k, d in self.state.docs().items() if k.startswith("i|")]:
            ts = time.time_ns()
            if self._plan(doc, ts) is None:
                continue
            to_place: list[dict[str, Any]] = []

            def step(
                changes: Changes, key: str = key, ts: int = ts, to_place: list[dict[str, Any]] = to_place
            ) -> list[Emit]:
                current = changes.get(key)
                return [] if current is None else self._index_round(changes, key, current, ts, to_place)

            await self.state.apply(f"index.round:{key}:{ts}", step, doc["p"])
            await self.state.flush()
            await self._place_all(to_place)

    async def _place(self, doc: dict[str, Any]) -> None:
        self.placing[doc["order_id"]] = doc
        order = VenueOrder(
            doc["order_id"],
            doc["account_id"],
            doc["client_order_id"],
            doc["symbol"],
            doc["side"],
            Decimal(doc["quantity"]),
            None if doc["price"] is None else Decimal(doc["price"]),
            doc["tif"],
        )
        try:
            await self.venues[doc["venue"]].place(order)
        except VenueError as exc:
            if exc.ambiguous:  # the venue may hold the order: reconcile asks it, nothing is decided here
                self.unsure.add(doc["order_id"])
                log.warning("venue place not answered; the venue will be asked",
                            extra={"order_id": doc["order_id"], "venue": doc["venue"], "error": str(exc)})
                return
            await self._venue_event(
                doc,
                VenueEvent(
                    doc["order_id"], LOST, "REJECTED", time.time_ns(), code=exc.code, message=exc.message
                ),
            )

    async def _amend_at_venue(self, doc: dict[str, Any], kind: str) -> None:
        """Send the cancel or replace stored in `doc`; a refusal goes through venue.events, which
        clears the stored intent and tells the client; an unanswered one stays stored for reconcile."""
        intent = doc[kind]
        head = {"command_id": intent["command_id"], "ts_event": intent["ts"], "account_id": doc["account_id"],
                "order_id": doc["order_id"], "client_order_id": intent["client_order_id"],
                "symbol": doc["symbol"]}
        cmd: r.CancelOrder | r.ReplaceOrder
        venue = self.venues[doc["venue"]]
        self.cancelling.add(doc["order_id"])
        try:
            if kind == "cancel":
                cmd = r.CancelOrder(**head)
                await venue.cancel(cmd.order_id)
            else:
                cmd = r.ReplaceOrder(**head, quantity=_dec(intent["quantity"]), price=_dec(intent["price"]))
                await venue.replace(cmd.order_id, cmd.quantity, cmd.price)
        except VenueError as exc:
            if exc.ambiguous:
                log.warning(f"venue {kind} not answered; it will be sent again",
                            extra={"order_id": doc["order_id"], "venue": doc["venue"], "error": str(exc)})
                return
            await self.outputs[VENUE_EVENTS].send(
                cmd.account_id, command_rejected(cmd, reason_of(exc.code), exc.message, "venue")
            )
        finally:
            self.cancelling.discard(doc["order_id"])

    async def _venue_event(self, doc: dict[str, Any], ev: VenueEvent) -> None:
        rec = venue_record(
            ev, doc, doc["venue"], ev.venue_seq, f"{doc['venue']}:{ev.order_id}:{ev.venue_seq}"
        )
        await self.outputs[VENUE_EVENTS].send(doc["account_id"], rec)

    async def on_venue_event(self, record: Record, delivery: Delivery) -> None:
        """A venue's event as an order event with this order's next sequence number."""
        assert isinstance(
            record,
            r.OrderAccepted
            | r.OrderFilled
            | r.OrderCanceled
            | r.OrderRejected
            | r.OrderExpired
            | r.OrderTriggered
            | r.OrderReplaced,
        )
        e = record
        key = f"v|{e.account_id}|{e.order_id}"

        def step(changes: Changes) -> list[Emit]:
            doc = changes.get(key)
            if isinstance(e, r.OrderRejected) and e.rejected_command in ("CancelOrder", "ReplaceOrder"):
                kind = "cancel" if e.rejected_command == "CancelOrder" else "replace"
                if doc is not None and doc.pop(kind, None) is not None:
                    changes.put(key, doc)
                return [Emit(ORDER_EVENTS, e.account_id, e)]  # the order itself is unchanged
            if doc is None or e.sequence <= doc["vseq"]:
                return []
            if e.sequence == LOST and isinstance(e, r.OrderCanceled) and doc["seq"] == 0:
                return []  # made up for an order that was never accepted: the REJECTED one covers it
            doc["vseq"] = e.sequence
            doc["seq"] += 1
            if isinstance(e, r.OrderReplaced):
                doc.pop("replace", None)
                doc["quantity"], doc["price"] = str(e.quantity), _text(e.price)
            out = e.model_copy(update={"sequence": doc["seq"], "event_id": f"{e.event_id}:o"})
            if isinstance(e, r.OrderCanceled | r.OrderRejected) or (
                isinstance(e, r.OrderFilled) and e.leaves_quantity == 0
            ):
                changes.delete(key)
                self.placing.pop(e.order_id, None)
            else:
                changes.put(key, doc)
            return [Emit(ORDER_EVENTS, e.account_id, out)]

        await self.state.apply(f"venue.events:{e.event_id}", step, delivery.partition)

    async def on_report(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, r.ExecutionReport)
        rep = record
        xkey = f"x|{rep.account_id}"
        if xkey not in self.state.docs():
            return

        def step(changes: Changes) -> list[Emit]:
            exposure = load_exposure(changes, rep.account_id, [rep.order_id])
            parent = basket_of(rep.order_id)
            lkey = f"l|{rep.account_id}|{parent[0]}" if parent is not None else ""
            bracket = changes.get(lkey) if parent is not None and rep.order_id not in exposure.open else None
            if bracket is not None and rep.order_id in bracket["exits"]:
                # a bracket's exit, placed by the matcher as the entry filled: an open order from now on
                exposure.adopt(rep)
                bracket["exits"].remove(rep.order_id)
                if bracket["exits"]:
                    changes.put(lkey, bracket)
                else:
                    changes.delete(lkey)
            tracked = exposure.on_report(rep)
            if tracked:
                store_exposure(changes, rep.account_id, exposure, [rep.order_id])
            # a parent hears of its child even when risk refused the child (no exposure entry)
            if parent is None:
                return []
            gkey = f"g|{rep.account_id}|{parent[0]}"
            parent_doc = changes.get(gkey)
            if parent_doc is not None:
                return self._algo_child_report(changes, gkey, parent_doc, rep)
            ikey = f"i|{rep.account_id}|{parent[0]}"
            doc = changes.get(ikey)
            if doc is not None:  # an index order's child: a child refused by risk was never tracked
                return self._index_report(changes, ikey, doc, rep)
            if not tracked:
                return []
            bkey = f"b|{rep.account_id}|{parent[0]}"
            basket = changes.get(bkey)
            if basket is None or not on_child_report(basket, parent[1], rep):
                return []
            done = finished(basket, rep.account_id, rep.ts_event)
            if done is None:
                changes.put(bkey, basket)
                return []
            changes.delete(bkey)
            return [Emit("basket.events", rep.account_id, done)]

        await self.state.apply(f"execution.reports:{rep.event_id}", step, delivery.partition)

    # -- TWAP / VWAP parents (domain/algo.py) ---------------------------------------

    def _algo_emits(self, changes: Changes, key: str, doc: dict[str, Any], now: int, tag: str) -> list[Emit]:
        """Store the parent (deleted once it ended) and tell its owner how it stands."""
        event = algo.update(doc, self.tape.of(doc["symbol"]), now, tag)
        out = [Emit(ALGO_EVENTS, doc["account_id"], event)]
        if algo.ended(doc):
            changes.delete(key)
            out.append(Emit("collateral.commands", doc["account_id"], _release(doc, now)))
        else:
            changes.put(key, doc)
            self.algos.add(key)
        return out

    async def on_algo_command(
        self, cmd: r.SubmitAlgoOrder | r.CancelOrder | r.ReplaceOrder, delivery: Delivery
    ) -> None:
        """A new parent (its document, slice 0 due at start_at), or a cancel of one."""
        key = f"g|{cmd.account_id}|{cmd.order_id}"

        def step(changes: Changes) -> list[Emit]:
            if isinstance(cmd, r.ReplaceOrder):
                refusal = "a TWAP/VWAP parent cannot be replaced; cancel it"
                return [Emit(ORDER_EVENTS, cmd.account_id,
                             command_rejected(cmd, "REPLACE_NOT_SUPPORTED", refusal, "algo"))]
            if isinstance(cmd, r.CancelOrder):
                doc = changes.get(key)
                if doc is None or not algo.cancel(doc):
                    return []
                return self._algo_emits(changes, key, doc, cmd.ts_event, "cancel")
            if changes.has(key):
                return []
            doc = algo.open_algo(cmd)
            instrument = self.instruments.get(cmd.symbol)
            if instrument is None or not instrument.enabled:
                doc["status"], doc["reason"] = r.AlgoStatus.REJECTED.value, "UNKNOWN_SYMBOL"
            return self._algo_emits(changes, key, doc, cmd.ts_event, "new")

        await self.state.apply(f"order.funded:{cmd.command_id}", step, delivery.partition)

    async def on_algo_slice(self, record: Record, delivery: Delivery) -> None:
        """Decide one due slice: its child (IOC) through the same risk and venue path as an order."""
        assert isinstance(record, r.SendAlgoSlice)
        for mirror in (self.instruments, self.kills, self.tickers):
            await mirror.wait()
        tick = record
        key = f"g|{tick.account_id}|{tick.order_id}"
        to_place: list[dict[str, Any]] = []

        def step(changes: Changes) -> list[Emit]:
            doc = changes.get(key)
            now = tick.ts_event
            if doc is None or doc["next"] != tick.slice or not algo.is_due(doc, now):
                return []
            instrument = self.instruments.get(doc["symbol"])
            if instrument is None:
                algo.cancel(doc, "UNKNOWN_SYMBOL")
                return self._algo_emits(changes, key, doc, now, "slice")
            tape = self.tape.of(doc["symbol"])
            since = doc["last_slice_at"] or algo.slice_at(doc, 0) - int(doc["interval"])
            k, quantity, why = algo.plan_slice(
                doc, now, algo.volume_between(tape, since, now), instrument.lot_size, instrument.min_quantity
            )
            out: list[Emit] = []
            child = None
            if quantity > 0:
                child = algo.child_order(doc, k, quantity, now)
                exposure = load_exposure(changes, tick.account_id, [child.order_id])
                out += self._route(changes, exposure, child, to_place)
                store_exposure(changes, tick.account_id, exposure, [child.order_id])
            algo.sliced(doc, k, child, now, why)
            return out + self._algo_emits(changes, key, doc, now, "slice")

        if await self.state.apply(f"{ALGO_SCHEDULE}:{tick.command_id}", step, delivery.partition):
            await self._place_all(to_place)

    def _algo_child_report(
        self, changes: Changes, key: str, doc: dict[str, Any], rep: r.ExecutionReport
    ) -> list[Emit]:
        if not algo.on_child_report(doc, rep):
            return []
        if rep.last_fill_quantity is None and not algo.ended(doc):
            changes.put(key, doc)  # an ack or an unfilled end: nothing the owner needs to hear
            return []
        return self._algo_emits(changes, key, doc, rep.ts_event, "fill")

    async def algo_timer(self) -> None:
        """Send a SendAlgoSlice for each parent whose next slice is due and has no child under way."""
        app = self.service.app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its type
        if app.rebalancing or not recovery.completed.is_set() or not self.tape.ready.is_set():
            return
        docs = self.state.docs()
        if self.algos_generation != self.state.generation:  # documents reloaded: find the parents again
            self.algos_generation = self.state.generation
            self.algos = {k for k in docs if k.startswith("g|")}
        now = time.time_ns()
        clock = time.monotonic()
        for key in list(self.algos):
            doc = docs.get(key)
            if doc is None or algo.ended(doc):
                self.algos.discard(key)
                continue
            if not algo.is_due(doc, now):
                continue
            mark = (doc["order_id"], doc["next"])
            if clock - self.ticked.get(mark, -SLICE_RESEND_S) < SLICE_RESEND_S:
                continue  # sent, not applied yet
            self.ticked[mark] = clock
            await self.outputs[ALGO_SCHEDULE].send(
                doc["account_id"],
                r.SendAlgoSlice(
                    command_id=f"algo:{doc['order_id']}:{doc['next']}",
                    ts_event=now,
                    account_id=doc["account_id"],
                    order_id=doc["order_id"],
                    slice=doc["next"],
                ),
            )
        self.ticked = {m: t for m, t in self.ticked.items() if clock - t < SLICE_RESEND_S}

    def _index_report(
        self, changes: Changes, key: str, doc: dict[str, Any], rep: r.ExecutionReport
    ) -> list[Emit]:
        """A child's report allocated to its leg; the order's progress once its round is over."""
        if not index.on_child_report(doc, rep):
            return []
        if index.open_children(doc):
            changes.put(key, doc)
            return []
        if doc["status"] != WORKING:
            return self._index_end(changes, key, doc, rep.ts_event)
        changes.put(key, doc)
        return [Emit(INDEX_EVENTS, rep.account_id, index.progress(doc, rep.ts_event))]

    # -- venue streams ---------------------------------------------------------------

    async def pump(self, name: str) -> None:
        """Forward one venue's event stream to venue.events."""
        venue = self.venues[name]
        venue.adapter.resume()
        async for ev in venue.adapter.events():
            doc = self.placing.get(ev.order_id)
            if doc is None:
                log.warning(
                    "venue event for an order this router does not track",
                    extra={"venue": name, "order_id": ev.order_id},
                )
                continue
            await self._venue_event(doc, ev)

    async def reconcile(self) -> None:
        """After a reconnect, or for orders from before a restart: ask the venue what happened."""
        app = self.service.app
        recovery: Any = app.tables.recovery  # type: ignore[attr-defined]  # on TableManager, not its type
        if app.rebalancing or not recovery.completed.is_set():
            return
        docs = [d for k, d in list(self.state.docs().items()) if k.startswith("v|")]
        for doc in docs:
            venue = self.venues.get(doc["venue"])
            if venue is None:
                continue
            order_id = doc["order_id"]
            reconnects = venue.adapter.reconnects()
            known = order_id in self.placing and order_id not in self.unsure
            amends = [k for k in ("cancel", "replace") if k in doc and order_id not in self.cancelling]
            if known and not amends and self.seen_reconnects.get(doc["venue"]) == reconnects:
                continue
            try:
                events = await venue.status(order_id)
            except VenueError as exc:
                if exc.code != "UNKNOWN_ORDER":
                    continue
                log.warning("venue lost an order", extra={"order_id": doc["order_id"], "venue": doc["venue"]})
                kind = "CANCELED" if doc["seq"] else "REJECTED"
                events = [
                    VenueEvent(
                        doc["order_id"],
                        LOST,
                        kind,
                        time.time_ns(),
                        code="VENUE_ORDER_LOST",
                        message="the venue does not know the order",
                        quantity=Decimal(0),
                    )
                ]
            self.placing[order_id] = doc
            self.unsure.discard(order_id)
            for ev in events:
                await self._venue_event(doc, ev)
            done = any(ev.kind in ("CANCELED", "REJECTED") or (ev.kind == "FILLED" and ev.leaves == 0)
                       for ev in events)
            if amends and not done:  # one at a time: a cancel first, a replace the next round
                await self._amend_at_venue(doc, amends[0])
        for name, venue in self.venues.items():
            self.seen_reconnects[name] = venue.adapter.reconnects()


def _pump_task(worker: RouterWorker, name: str) -> Callable[[], Awaitable[None]]:
    async def pump() -> None:  # no parameters: Faust passes the app to a task that takes one
        await worker.pump(name)

    pump.__name__ = pump.__qualname__ = f"pump_{name}"
    return pump


def build(settings: RouterSettings | None = None) -> Service:
    """The router service, ready to run."""
    settings = settings or RouterSettings()
    service = Service(settings)
    worker = RouterWorker(service, settings)
    service.consume("order.funded")(worker.on_funded)
    service.consume("venue.events")(worker.on_venue_event)
    service.consume("execution.reports")(worker.on_report)
    for name in worker.venues:
        service.app.task(_pump_task(worker, name))
    service.consume(ALGO_SCHEDULE)(worker.on_algo_slice)
    service.app.timer(settings.reconcile_interval_s)(worker.reconcile)
    service.app.timer(settings.algo_tick_s)(worker.algo_timer)
    service.app.timer(settings.index_round_interval_s)(worker.index_rounds)
    return service

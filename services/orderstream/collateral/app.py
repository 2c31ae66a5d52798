"""The collateral worker: order.commands, collateral.commands and execution.reports in.

Wiring only: decode (the template), load the account's ledger, decide, store the
account once per source record (common/state.py), send. A funded order goes on
to order.funded; a refused one becomes an OrderRejected on order.events, so the
client hears why.

Collateral is the one gate every new order passes, so it is where a repeated order is
recognised however late it comes: each order id it decided (funded or refused) leaves a
marker document `o|<order id>` for `order_memory_s` after the order's own time, besides its
hold while the order is open. The gateway resends a repeated client_order_id only while the
original is younger than its `resend_within_s`, which is shorter (docs/api.md). A
marker is deleted by a later step of its own partition once it has expired, a few per step.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from orderstream.collateral.domain.ledger import UNKNOWN_SYMBOL, Account, pool_of
from orderstream.collateral.settings import CollateralSettings
from orderstream.common import records as r
from orderstream.common.app import Delivery, Service
from orderstream.common.basket import child_id, children, placed_at_once
from orderstream.common.index import refused as index_refused
from orderstream.common.mirror import Mirror
from orderstream.common.record import Record
from orderstream.common.rejections import command_rejected, submit_rejected
from orderstream.common.state import Changes, Emit, StateStore
from orderstream.common.topics import CLIENT_COMMAND_RECORDS

INDEX = "INDEX"  # the symbol of an index order's pool (its children carry the real ones)
INVALID_ORDER = "INVALID_ORDER"


def index_refusal(cmd: r.SubmitIndexOrder, instruments: Mapping[str, r.Instrument]) -> tuple[str, str] | None:
    """Why collateral cannot fund an index order from one pool: every leg must be bought in its asset."""
    for leg in cmd.legs:
        inst = instruments.get(leg.symbol)
        if inst is None:
            return UNKNOWN_SYMBOL, f"unknown symbol {leg.symbol}"
        if inst.quote_asset != cmd.asset:
            return INVALID_ORDER, (f"{leg.symbol} is priced in {inst.quote_asset}, "
                                   f"the collateral is {cmd.asset}")
    return None

ORDER_EVENTS = "order.events"
FUNDED = "order.funded"
EVENTS = "collateral.events"
INDEX_EVENTS = "index.events"


def rejected(
    cmd: r.SubmitOrder | r.SubmitAlgoOrder | r.ReplaceOrder, reason: str, message: str
) -> r.OrderRejected:
    """The OrderRejected that tells the client why collateral refused `cmd`."""
    if isinstance(cmd, r.SubmitOrder | r.SubmitAlgoOrder):
        return submit_rejected(cmd, reason, message, "rej")
    return command_rejected(cmd, reason, message, "rej")


def load_account(changes: Changes, account_id: str, order_ids: Sequence[str] = ()) -> Account:
    """The account's ledger with the holds of `order_ids` (those that exist): each hold is a
    document of its own (`a|<account>|<order>`), so a step touches the account's balances and
    one or a few holds, not every open order of the account."""
    return Account.from_doc(account_id, changes.get_split(f"a|{account_id}", "holds", order_ids))


def with_pool(changes: Changes, account_id: str, order_id: str) -> list[str]:
    """`order_id` and, when it is a child of a pool (or a pool), the pool and its members: what a
    step about it must load. A PARENT pool's members are its open children (a child that ended is
    a number in the pool's `finished`); in a pool stored before that, every child it saw, whose
    holds are loaded once so that the ledger can tell the ended ones (`Pool.from_doc`)."""
    ids = [order_id]
    for pool_id in (order_id, pool_of(order_id)):
        doc = changes.get(f"a|{account_id}|{pool_id}") if pool_id is not None else None
        if isinstance(doc, dict):  # a pool (an order's own hold is a list)
            assert pool_id is not None
            ids += [pool_id, *doc["members"], *([doc["entry"]] if doc["entry"] else [])]
            break
    return list(dict.fromkeys(ids))


def store_account(changes: Changes, account: Account, order_ids: Sequence[str] = ()) -> None:
    """Write the account's balances and the holds it holds in memory; a hold of `order_ids`
    gone (settled, released) is deleted."""
    changes.put_split(f"a|{account.account_id}", account.to_doc(), "holds", order_ids)


class CollateralWorker:
    def __init__(self, service: Service, settings: CollateralSettings) -> None:
        self.service = service
        outputs = {name: service.output(name) for name in (ORDER_EVENTS, FUNDED, EVENTS, INDEX_EVENTS)}
        self.state = StateStore(service, "collateral-accounts", outputs, settings.dedupe_window)
        self.instruments = Mirror(service, "ref.instruments", r.Instrument)
        self.order_memory_ns = int(settings.order_memory_s * 1e9)
        self._expiry: dict[int, deque[tuple[int, str]]] = {}  # partition -> (order time, marker key)
        self._expiry_generation = -1
        service.health_extras.append(lambda: {"documents": self.state.loaded_count()})

    # -- the orders collateral decided ------------------------------------------------

    def _markers(self, partition: int) -> deque[tuple[int, str]]:
        """The markers of `partition`, oldest first (rebuilt whenever the documents reload)."""
        if self._expiry_generation != self.state.generation:
            docs = self.state.docs()
            self._expiry_generation = self.state.generation
            found = sorted((doc["t"], doc["p"], key) for key, doc in docs.items() if key.startswith("o|"))
            self._expiry = {}
            for t, p, key in found:
                self._expiry.setdefault(p, deque()).append((t, key))
        return self._expiry.setdefault(partition, deque())

    def _decided(
        self, changes: Changes, orders: Sequence[r.SubmitOrder | r.SubmitAlgoOrder | r.SubmitIndexOrder],
        partition: int,
    ) -> None:
        """Mark `orders` as decided, and let go of at most 8 expired markers of the partition."""
        markers = self._markers(partition)
        expired = time.time_ns() - self.order_memory_ns
        for _ in range(8):
            if not markers or markers[0][0] > expired:
                break
            _, key = markers.popleft()
            if changes.has(key):
                changes.delete(key)
        for o in orders:
            key = f"o|{o.order_id}"
            changes.put(key, {"t": o.ts_event, "p": partition})
            markers.append((o.ts_event, key))

    def _events(self, changes: Changes, account: Account, events: list[Any],
                order_ids: Sequence[str] = ()) -> list[Emit]:
        store_account(changes, account, order_ids)
        return [Emit(EVENTS, account.account_id, e) for e in events]

    async def on_order_command(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, CLIENT_COMMAND_RECORDS)  # what order.commands carries
        await self.instruments.wait()
        if isinstance(record, r.SubmitIndexOrder | r.UpdateIndexOrder):
            await self._index_command(record, delivery.partition)
            return
        cmd = record
        partition = delivery.partition

        def step(changes: Changes) -> list[Emit]:
            if isinstance(cmd, r.CancelOrder):
                return [Emit(FUNDED, cmd.account_id, cmd)]
            if isinstance(cmd, r.ReplaceOrder):
                ids = with_pool(changes, cmd.account_id, cmd.order_id)
                account = load_account(changes, cmd.account_id, ids)
                events, refusal = account.hold_replace(cmd, self.instruments.get(cmd.symbol))
                if refusal is not None:
                    store_account(changes, account, ids)
                    return [Emit(ORDER_EVENTS, cmd.account_id, rejected(cmd, *refusal))]
                return [*self._events(changes, account, events, ids), Emit(FUNDED, cmd.account_id, cmd)]
            submits: list[r.SubmitOrder] = []
            if isinstance(cmd, r.SubmitOrderList):
                submits = placed_at_once(cmd)
                ids = [cmd.order_id, *(child_id(cmd.order_id, i) for i in range(len(cmd.orders)))]
            elif isinstance(cmd, r.SubmitAlgoOrder):  # one pool; its children come later, from the router
                ids = [cmd.order_id]
            else:
                submits = children(cmd) if isinstance(cmd, r.SubmitBasket) else [cmd]
                ids = [o.order_id for o in submits]
            orders: list[r.SubmitOrder | r.SubmitAlgoOrder] = [*submits]
            if isinstance(cmd, r.SubmitAlgoOrder):
                orders = [cmd]
            if any(changes.has(f"o|{o.order_id}") for o in orders):
                return []  # a repeat, however late: this order was decided already
            account = load_account(changes, cmd.account_id, ids)
            if any(o.order_id in account.holds or o.order_id in account.pools for o in orders):
                return []  # a repeat of an order held before markers existed
            self._decided(changes, orders, partition)
            if isinstance(cmd, r.SubmitOrderList):
                events, refusal = account.hold_list(cmd, submits, self.instruments.get(cmd.symbol))
            elif isinstance(cmd, r.SubmitAlgoOrder):
                events, refusal = account.hold_algo(cmd, self.instruments.get(cmd.symbol))
            else:
                events, refusal = account.hold_orders(submits, self.instruments.latest)
            if refusal is not None:
                return [Emit(ORDER_EVENTS, cmd.account_id, rejected(o, *refusal)) for o in orders]
            return [*self._events(changes, account, events, ids), Emit(FUNDED, cmd.account_id, cmd)]

        await self.state.apply(f"order.commands:{cmd.command_id}", step, partition)

    # -- index orders: one pool hold each, its amount as the router takes updates ---------------
    # `n|<account>|<index id>` keeps what the pool was given in all (`held_in`: the collateral amount
    # collateral holds for, spent part included) and the last update, which the router's
    # ResizeParentHold answers: an increase is held when the update passes here, a decrease only
    # once the router has taken it (its open children were planned within the old amount).

    async def _index_command(self, cmd: r.SubmitIndexOrder | r.UpdateIndexOrder, partition: int) -> None:
        key = f"n|{cmd.account_id}|{cmd.order_id}"

        def step(changes: Changes) -> list[Emit]:
            if isinstance(cmd, r.SubmitIndexOrder):
                if changes.has(f"o|{cmd.order_id}"):
                    return []  # a repeat, however late
                self._decided(changes, [cmd], partition)
                account = load_account(changes, cmd.account_id, [cmd.order_id])
                refusal = index_refusal(cmd, self.instruments.latest)
                events: list[Any] = []
                if refusal is None:
                    events, refusal = account.open_pool(cmd.order_id, f"{cmd.command_id}:0", cmd.ts_event,
                                                        INDEX, cmd.asset, cmd.collateral_amount)
                if refusal is not None:
                    return [Emit(INDEX_EVENTS, cmd.account_id, index_refused(cmd, refusal[0], cmd.ts_event))]
                changes.put(key, {"held_in": str(cmd.collateral_amount), "last_update": None})
                funded = Emit(FUNDED, cmd.account_id, cmd)
                return [*self._events(changes, account, events, [cmd.order_id]), funded]
            doc = changes.get(key)
            if doc is None:  # ended: the router releases whatever is left again
                return [Emit(FUNDED, cmd.account_id, cmd)]
            doc["last_update"] = cmd.command_id
            changes.put(key, doc)
            extra = cmd.collateral_amount - Decimal(doc["held_in"])
            if extra <= 0:  # a decrease: the router takes it, then answers with ResizeParentHold
                return [Emit(FUNDED, cmd.account_id, cmd)]
            ids = with_pool(changes, cmd.account_id, cmd.order_id)
            account = load_account(changes, cmd.account_id, ids)
            events, refusal = account.resize_pool(cmd.order_id, extra, f"{cmd.command_id}:0", cmd.ts_event)
            if refusal is not None:
                return [Emit(FUNDED, cmd.account_id, cmd.model_copy(update={"refusal": refusal[0]}))]
            doc["held_in"] = str(cmd.collateral_amount)
            return [*self._events(changes, account, events, ids), Emit(FUNDED, cmd.account_id, cmd)]

        await self.state.apply(f"order.commands:{cmd.command_id}", step, partition)

    def _resize_index(self, changes: Changes, cmd: r.ResizeParentHold) -> list[Emit]:
        """The router took the last update at `cmd.amount`: release what the pool was given beyond it."""
        key = f"n|{cmd.account_id}|{cmd.order_id}"
        doc = changes.get(key)
        if doc is None or doc["last_update"] != cmd.update_command_id:
            return []  # an answer to an update a later one overtook: that one's answer counts
        excess = Decimal(doc["held_in"]) - cmd.amount
        if excess <= 0:
            return []
        doc["held_in"] = str(cmd.amount)
        changes.put(key, doc)
        ids = with_pool(changes, cmd.account_id, cmd.order_id)
        account = load_account(changes, cmd.account_id, ids)
        events, _ = account.resize_pool(cmd.order_id, -excess, f"{cmd.command_id}:0", cmd.ts_event)
        return self._events(changes, account, events, ids)

    async def on_collateral_command(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, r.Deposit | r.Withdraw | r.ReleaseParentHold | r.ResizeParentHold)
        cmd = record

        def step(changes: Changes) -> list[Emit]:
            if isinstance(cmd, r.ResizeParentHold):
                return self._resize_index(changes, cmd)
            if isinstance(cmd, r.ReleaseParentHold):
                if changes.has(f"n|{cmd.account_id}|{cmd.order_id}"):
                    changes.delete(f"n|{cmd.account_id}|{cmd.order_id}")
                ids = with_pool(changes, cmd.account_id, cmd.order_id)
                account = load_account(changes, cmd.account_id, ids)
                return self._events(changes, account, account.release_parent(cmd), ids)
            account = load_account(changes, cmd.account_id)
            events = account.deposit(cmd) if isinstance(cmd, r.Deposit) else account.withdraw(cmd)
            return self._events(changes, account, events)

        await self.state.apply(f"collateral.commands:{cmd.command_id}", step, delivery.partition)

    async def on_report(self, record: Record, delivery: Delivery) -> None:
        assert isinstance(record, r.ExecutionReport)
        await self.instruments.wait()
        rep = record
        if f"a|{rep.account_id}" not in self.state.docs():
            return  # an account collateral never funded

        def step(changes: Changes) -> list[Emit]:
            ids = with_pool(changes, rep.account_id, rep.order_id)
            account = load_account(changes, rep.account_id, ids)
            pool_id = pool_of(rep.order_id)
            if rep.order_id not in account.holds and (pool_id is None or pool_id not in account.pools):
                return []  # an order collateral holds nothing for
            events = account.on_report(rep, self.instruments.get(rep.symbol))
            return self._events(changes, account, events, ids)

        await self.state.apply(f"execution.reports:{rep.event_id}", step, delivery.partition)


def build(settings: CollateralSettings | None = None) -> Service:
    """The collateral service, ready to run."""
    settings = settings or CollateralSettings()
    service = Service(settings)
    worker = CollateralWorker(service, settings)
    service.consume("order.commands")(worker.on_order_command)
    service.consume("collateral.commands")(worker.on_collateral_command)
    service.consume("execution.reports")(worker.on_report)
    return service

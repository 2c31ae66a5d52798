"""How records reach the handlers inside Faust: per partition, in offset order, in the batches fetched.

Stock Faust hands every fetched record to its agents one at a time: a `ConsumerMessage`
and an `Event` per record, a conductor callback, a `wait_first` (four tasks) per record
so that a rebalance can interrupt it, a stream iteration and an acknowledgement. That
cost about 100 µs per record here, more than most of our handlers, and its fetch loop
could drop records after a rebalance while still handing over later ones (the service
template used to read such records back, and to hold commits behind them).

`FastConsumer` is Faust's aiokafka consumer with another fetch loop. For a topic that
has a route (`FastConsumer.routes`, set by the service template), the records the fetch
returned for one partition go to the route's handler as one list, straight from the
fetch, in offset order; the handler's work is done before the next list of that
partition is handed over. The consumer keeps, per partition, the offset of the next
record it must hand over:
- a record behind it was handed over already (a re-fetch after a seek) and is passed over;
- a record ahead of it means records in between were not handed over: the consumer seeks
  back to the missing offset and drops the rest of the fetch, so the order holds by
  construction (a hole that is still there after the seek, which only retention or
  compaction can make, is logged and passed);
- offsets are committed up to the last record whose handler returned, through Faust's
  own commit, which flushes the producers first.
Everything else (table changelogs during recovery and for standbys) takes Faust's own
path. Faust still owns the app, the group membership, rebalances, table recovery, the
web server and timers; a rebalance waits for the handler that is running to return.

The fetcher is tuned too: aiokafka keeps one fetch in flight per broker, and a
partition whose records were not yet taken when it went out waits for it to come
back; Faust lets the broker hold a fetch that finds nothing for 1.5 s, here 100 ms
(`FETCH_MAX_WAIT_MS`). The records of every partition a fetch returned are taken at
once, so aiokafka's prefetch back-off (100 ms) only holds fetches back for partitions
Faust has paused (table recovery). A fetch takes the records of the partitions Faust has
not paused only, also when it has paused them all (`Taking`). aiokafka runs on the worker's
event loop, not in a thread with a loop of its own as in stock Faust (`_LoopConsumer`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiokafka import ConsumerRecord
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service

log = logging.getLogger(__name__)

#: A route: the records of one partition, in offset order, as fetched.
Route = Callable[[int, list[ConsumerRecord]], Awaitable[None]]


#: How long the broker may hold a fetch that found nothing (Faust: 1,500 ms). aiokafka keeps one
#: fetch in flight per broker, and a partition whose records were still waiting to be taken
#: when that fetch went out is not in it: its next records wait for the fetch to come back.
FETCH_MAX_WAIT_MS = 100


class _LoopConsumer(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer "thread" run as a plain service on the worker's own event loop, with a
    shorter fetch wait (`FETCH_MAX_WAIT_MS`).

    Stock Faust runs aiokafka in a thread of its own with its own event loop: every fetch,
    seek and commit crosses between the two loops (a method queue, `call_soon_threadsafe`
    both ways) and the two threads take turns at the GIL. Here aiokafka runs on the worker's
    loop and `call_thread` is a plain await. Heartbeats then share the loop with the handlers,
    which hand over between batches (a batch takes milliseconds, the session timeout is
    seconds); Faust's rebalance callbacks already ran on this loop.
    """

    # mode.Service's own lifecycle instead of mode.ServiceThread's (which starts a thread)
    wait_for_shutdown = False
    start = Service.start
    maybe_start = Service.maybe_start
    stop = Service.stop
    _stopped_set = Service._stopped_set
    set_shutdown = Service.set_shutdown
    _new_shutdown_event = Service._new_shutdown_event
    _stop_children = Service._stop_children
    _stop_futures = Service._stop_futures
    _stop_exit_stacks = Service._stop_exit_stacks

    def __init__(self, consumer: Any, *, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read when the consumer starts its fetcher
        return consumer

    async def crash(self, exc: BaseException) -> None:
        await Service.crash(self, exc)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def call_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        result = fun(*args, **kwargs)  # some are plain functions (the method queue awaited those only)
        return await result if inspect.isawaitable(result) else result

    # the method queue both would go through is never started here: a call through it would hang
    async def cast_thread(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        result = fun(*args, **kwargs)
        if inspect.isawaitable(result):
            self.add_future(result)


class Taking:
    """The partitions a fetch may take records of: Faust's active set, read as it changes.

    aiokafka's `fetched_records(partitions)` takes the records of *every* partition when
    `partitions` is empty, and moves their positions past them. Faust's set empties while a
    fetch waits: a rebalance pauses every partition. A fetch that was waiting then took,
    among others, whole table changelog partitions, which the fetch loop dropped (the flow is
    stopped). When recovery had sought such a partition back to the start of its log
    (`seek_wait`) a few ms before, its position was left at the end: recovery never got an
    event of it ("No event received for active tp ... since recovery start") and that
    partition's flow never resumed (tests/e2e/test_replica_failover.py, about one run in
    two). Empty, this set takes nothing: a partition's records wait in the fetcher until
    Faust resumes it.
    """

    __slots__ = ("active",)

    def __init__(self, active: set[TP]) -> None:
        self.active = active

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self.active


class FastConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose fetch loop hands routed partitions' records over in batches."""

    routes: dict[str, Route]
    compacted: frozenset[str] = frozenset()  # routed topics whose offsets have holes by design

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.routes = getattr(self.app, "routes", {})
        self.compacted = frozenset(getattr(self.app, "compacted_routes", ()))
        self._next: dict[TP, int] = {}  # per routed partition: the next offset to hand over
        self._done: dict[TP, int] = {}  # per routed partition: handled up to (the offset to commit)
        self._sought: dict[TP, int] = {}  # the hole we sought back over once
        self._handling: asyncio.Future[None] | None = None
        self.handed = 0  # records handed to routes (health, tests)
        self.sought_back = 0  # seeks back over records not handed over

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _LoopConsumer(self, loop=self.loop, beacon=self.beacon)

    # -- the fetch loop ---------------------------------------------------------

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        """Fetched records of the active partitions only, also once a rebalance has paused them all."""
        taking = None if active_partitions is None else Taking(active_partitions)
        # aiokafka asks a fetch's partitions for their truth and membership only
        return await super()._getmany(taking, timeout)  # type: ignore[arg-type]

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - run by Faust's Fetcher
        fetcher_stopped = fetcher._stopped.is_set
        consumer_stopped = self._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                records, _active = await self._wait_next_records(1.0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    await self.perform_seek()  # what stock Faust does: read again from the commits
                    continue
                generation = self.app.consumer_generation_id
                for tp, batch in records.items():
                    if not self.flow_active or self.app.consumer_generation_id != generation:
                        break  # a rebalance began: Faust seeks to the commits, the rest comes again
                    route = self.routes.get(tp.topic)
                    if route is None:
                        await self._stock(tp, batch)
                    else:
                        await self._hand_over(tp, batch, route)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _stock(self, tp: TP, batch: list[Any]) -> None:
        """Faust's own per-message path (table changelogs)."""
        for record in batch:
            message = self._to_message(tp, record)
            read = self._read_offset.get(tp)
            if read is None or message.offset >= read:
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = message.offset

    def _in_order(self, tp: TP, batch: list[ConsumerRecord]) -> list[ConsumerRecord] | None:
        """The records of `batch` to hand over now; None after seeking back over a hole."""
        expected = self._next.get(tp)
        if expected is None:
            return batch
        first = batch[0].offset
        if first > expected and tp.topic not in self.compacted:
            if self._sought.get(tp) != expected:
                self._sought[tp] = expected
                self.sought_back += 1
                log.warning("records were not handed over in order; reading again from the first one",
                            extra={"topic": tp.topic, "partition": tp.partition,
                                   "expected": expected, "got": first})
                return None
            log.error("records are gone from the log (retention); going on after them",
                      extra={"topic": tp.topic, "partition": tp.partition, "missing_from": expected,
                             "missing_to": first - 1})
        if first < expected:
            batch = [record for record in batch if record.offset >= expected]
        return batch

    async def _hand_over(self, tp: TP, batch: list[ConsumerRecord], route: Route) -> None:
        todo = self._in_order(tp, batch)
        if todo is None:
            await self.seek(tp, self._next[tp])
            return
        if not todo:
            return
        done = self._handling = self.loop.create_future()
        try:
            await route(tp.partition, todo)
        finally:
            self._handling = None
            done.set_result(None)
        last = todo[-1].offset
        self._next[tp] = self._done[tp] = last + 1
        self._read_offset[tp] = last
        self.handed += len(todo)

    async def wait_idle(self) -> None:
        """Until the handler that runs now (if any) has returned."""
        while self._handling is not None:
            await asyncio.shield(self._handling)

    # -- commits ---------------------------------------------------------------

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        seen = set()
        for tp in [*self._acked, *self._done]:
            if tp not in seen and (topics is None or tp in topics or tp.topic in topics):
                seen.add(tp)
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.routes:
            return self._done.get(tp)
        result: int | None = super()._new_offset(tp)
        return result

    # -- rebalances ----------------------------------------------------------------

    async def wait_empty(self) -> None:
        await self.wait_idle()
        await super().wait_empty()

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.wait_idle()  # no handler runs on a partition that another worker may now own
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._next.pop(tp, None)
            self._done.pop(tp, None)
            self._sought.pop(tp, None)


class FastTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `FastConsumer`."""

    Consumer = FastConsumer

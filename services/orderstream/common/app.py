"""The service template: a Faust app wired with settings, the Avro codec, health, metrics and DLQs.

A service builds one `Service`, declares its inputs with `@service.consume(topic)`
and its outputs with `service.output(topic)`, and runs `service.main()`.

Records reach the handlers through `common/delivery.py`: each partition's records in
offset order, in the batches the consumer fetched; a batch's state is written once
(`batch_ends`, see common/state.py) and its offsets are committed after.

Error policy (see ../shared/STYLE.md):
- A record that cannot be decoded, fails validation, or is not a record type
  the topic carries goes to `<topic>.dlq` with the error in headers; the
  service goes on with the next record.
- A business outcome is never an exception: handlers emit rejection events.
- An error the service names transient (`transient_errors`: a database that does
  not answer) pauses the partition and tries again, without end: nothing is
  discarded for an outage. So does a schema registry that does not answer while a
  record is decoded (`RegistryUnavailable`); only a registry that answers "no such
  schema" makes a record undecodable.
- Anything else a handler raises is a bug, or a record the code cannot handle. The
  batch's unsaved state is dropped (`resets`) and its records are tried one at a
  time; a record that fails `max_tries` times goes to `<topic>.dlq` with the error
  and its source offset, `orderstream_handler_failures_total` counts it, and the
  partition goes on. `orderstream dlq-replay` sends it back after a fix.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import faust
from aiokafka import ConsumerRecord

from orderstream.common import metrics
from orderstream.common.codec import AvroCodec, DecodeError, RegistryUnavailable, schema_ids
from orderstream.common.delivery import FastConsumer, FastTransport, Route
from orderstream.common.heap import settle
from orderstream.common.logs import logging_config
from orderstream.common.producer import RecordProducer
from orderstream.common.record import Record
from orderstream.common.records import ALL_RECORDS
from orderstream.common.settings import ServiceSettings
from orderstream.common.topics import TopicSpec, dlq_name, spec, topic_configs

log = logging.getLogger(__name__)

EX_SOFTWARE = 70


@dataclass(frozen=True)
class Delivery:
    """Where a record came from: enough to trace it and to dead-letter it."""

    topic: str  # the deployed name, prefix included
    partition: int
    offset: int
    key: str | None
    headers: Mapping[str, bytes]
    value: bytes | None = None  # the record as fetched, for the dead-letter topic

    @classmethod
    def of(cls, record: ConsumerRecord) -> Delivery:
        key = record.key.decode(errors="replace") if record.key is not None else None
        return cls(record.topic, record.partition, record.offset, key, dict(record.headers or ()),
                   record.value)


#: What a handler sends: deployed topic, key, value, headers, the counter of the output.
_Outgoing = tuple[str, bytes, bytes, Mapping[str, bytes] | None, Any]
#: The records the batch being handled (in this task) sends once it is done.
_OUTBOX: contextvars.ContextVar[list[_Outgoing] | None] = contextvars.ContextVar("outbox", default=None)

Handler = Callable[[Record, Delivery], Awaitable[None]]
BatchHandler = Callable[[list[tuple[Record, Delivery]]], Awaitable[None]]


def lost_record_exit(reason: str) -> NoReturn:
    """A record the broker would not take: exit before any input it came from is committed."""
    log.critical("exiting before the inputs of an unsent record are committed: %s", reason)
    _exit_now()


def _exit_now() -> NoReturn:
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EX_SOFTWARE)


class _App(faust.App):
    """Faust's app with the project's delivery path, and a producer flush that also flushes
    the service's own `RecordProducer`.

    Faust flushes its producer before it commits offsets, before it gives partitions
    away in a rebalance, and when it stops: the outputs and table writes sent through
    the `RecordProducer` are then in the broker too.
    """

    records: RecordProducer | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.routes: dict[str, Route] = {}  # deployed topic -> its handler (common/delivery.py)
        self.compacted_routes: set[str] = set()
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return FastTransport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        await super().on_start()
        if self.records is not None:
            self.records.start()

    async def on_stop(self) -> None:
        await super().on_stop()  # flushes the producers
        if self.records is not None:
            self.records.stop()

    def _new_producer(self) -> Any:
        app = self

        class FlushingProducer(self.transport.Producer):  # type: ignore[name-defined,misc]
            async def flush(self) -> None:
                await super().flush()
                if app.records is not None:
                    await app.records.flush()

        return FlushingProducer(self.transport, loop=self.loop, beacon=self.beacon)


class Output:
    """A typed output topic: encodes records with the codec and keys them as UTF-8."""

    def __init__(self, service: Service, topic: TopicSpec) -> None:
        self.spec = topic
        self._service = service
        self._name = service.settings.topic(topic.name)
        self._counted = metrics.child(metrics.RECORDS_OUT, service.settings.service, topic.name)
        service.writes.add(topic.name)
        service.raw_topic(self._name, config=topic_configs(topic))  # declared, so Faust creates it if missing

    async def send(self, key: str, record: Record, headers: Mapping[str, bytes] | None = None) -> None:
        """Queue `record` for sending; it is in the broker before the input's offset is committed."""
        if not self.spec.accepts(record):
            raise TypeError(f"{type(record).__name__} is not a record of {self.spec.name}")
        await self.send_encoded(key, self._service.codec.encode(record), headers)

    async def send_encoded(self, key: str, value: bytes, headers: Mapping[str, bytes] | None = None) -> None:
        """Queue a record already encoded by this service's codec (see common/producer.py).

        Inside a handler it goes out when the handler's batch is done (a batch that fails
        sends nothing: its records are tried again); elsewhere (timers) at once.
        """
        item: _Outgoing = (self._name, key.encode(), value, headers, self._counted)
        outbox = _OUTBOX.get()
        if outbox is not None:
            outbox.append(item)
        else:
            await self._service.send_out([item])


class TableWriter:
    """Writes a bytes-keyed table: its store and its changelog, straight through the producer.

    `table[key] = value` queues the changelog record in Faust's producer buffer, which sends
    one message at a time; once 100 wait, the stream stops and flushes them one by one
    ("producer buffer full"), and a loaded matcher stalled for seconds at a time. Here the
    record goes to the service's `RecordProducer` (as `Output` does), which Faust's producer
    flush waits for, so a command's table writes are in the broker before its offset is
    committed. The changelog partition is given: the input record's partition (a table is
    co-partitioned with the topic its agent reads).
    """

    def __init__(self, service: Service, table: faust.types.TableT[Any, Any]) -> None:
        self._records = service.records
        self._table = table
        self._topic = table.changelog_topic.get_topic_name()

    async def write(self, partition: int, writes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Set each key (None deletes it, with a tombstone in the changelog), in order.

        The store changes at once, before the first await: another agent of the worker
        never sees half of a step's writes. Then the changelog records are sent.
        """
        writes = list(writes)
        store: Any = self._table.data
        partitions = getattr(store, "_key_partition", None)
        for key, value in writes:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
            # the in-memory store forgets, after a rebalance, the keys of partitions it lost;
            # a deleted key leaves its index too (a pruned key per command would pile up)
            if partitions is not None:
                if value is None:
                    partitions.pop(key, None)
                else:
                    partitions[key] = partition
        for key, value in writes:
            await self._records.send(self._topic, key, value, partition)


class Service:
    """One Orderstream service: a Faust app plus the project's conventions."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        records: Iterable[type[Record]] = ALL_RECORDS,
        max_tries: int = 3,
        retry_backoff_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.name = settings.service
        self.codec = AvroCodec(records, schema_ids(settings.schema_registry_url))
        self.max_tries = max_tries
        self.retry_backoff_s = retry_backoff_s
        self.transient_errors: tuple[type[BaseException], ...] = ()  # outages: retried without end
        self.batch_ends: list[Callable[[], Awaitable[None]]] = []  # after each batch: write its state
        self.resets: list[Callable[[], None]] = []  # after a failed batch: drop its unsaved state
        datadir = os.path.join(settings.data_dir, self.name)
        os.makedirs(datadir, exist_ok=True)
        brokers = ";".join(f"kafka://{h.strip()}" for h in settings.kafka_bootstrap_servers.split(","))
        app_id = f"{settings.topic_prefix}orderstream-{self.name}"
        self.records = RecordProducer(
            settings.kafka_bootstrap_servers, client_id=app_id,
            linger_ms=settings.producer_linger_ms, on_fatal=lost_record_exit,
        )
        self.app = _App(
            app_id,
            broker=brokers,
            store=settings.store,
            datadir=datadir,
            web_host=settings.web_host,
            web_port=settings.web_port,
            web_in_thread=False,
            topic_partitions=settings.partitions,
            topic_replication_factor=1,
            processing_guarantee="at_least_once",
            producer_acks=-1,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.session_timeout_s,
            consumer_group_instance_id=settings.instance_id or None,
            table_standby_replicas=settings.standby_replicas,
            broker_heartbeat_interval=settings.session_timeout_s / 10,
            broker_commit_interval=settings.commit_interval_s,
            producer_linger=settings.producer_linger_ms / 1000,
            logging_config=logging_config(self.name, settings.log_level, settings.worker_id),
        )
        self.app.records = self.records

        async def assigned(sender: Any, /, *tps: Any, signal: Any, **kwargs: Any) -> None:
            self.assignments += 1
            if self.assignments == 1:
                settle()  # the worker is built and has joined its group (common/heap.py)

        self.app.on_partitions_assigned.connect(assigned)
        self.assignments = 0  # rebalances this worker has been through (0: not yet part of its group)
        metrics.setup_faust_metrics(self.app, name_prefix=f"faust_{self.name}")
        self._dlqs: dict[str, faust.TopicT] = {}
        self._started = time.time()
        self.health_extras: list[Callable[[], dict[str, Any]]] = []
        self.mirrors: list[Any] = []  # common.mirror.Mirror, read in full before the worker starts
        self.reads: set[str] = set()  # catalog topics this service consumes (checked against the catalog)
        self.writes: set[str] = set()  # catalog topics it produces
        self.failures = 0  # records dead-lettered after failing their handler `max_tries` times
        self._add_health()

    # -- topics ---------------------------------------------------------------

    def raw_topic(self, *names: str, config: Mapping[str, str] | None = None) -> faust.TopicT:
        """A topic (or several read as one) of raw bytes: decoding is ours, so a bad record can be
        dead-lettered."""
        return self.app.topic(
            *names,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            config=dict(config or {}),
        )

    def output(self, topic: str) -> Output:
        return Output(self, spec(topic))

    def table_writer(self, table: faust.types.TableT[Any, Any]) -> TableWriter:
        return TableWriter(self, table)

    def _dlq(self, topic: str) -> faust.TopicT:
        if topic not in self._dlqs:
            self._dlqs[topic] = self.raw_topic(dlq_name(topic), config={"cleanup.policy": "delete"})
        return self._dlqs[topic]

    async def dead_letter(self, delivery: Delivery, value: bytes | None, error: BaseException,
                          tries: int = 0) -> None:
        """Send the original bytes to `<topic>.dlq` with the error, and wait until it is stored."""
        headers = {
            **delivery.headers,
            "x-dlq-error": str(error).encode()[:4000],
            "x-dlq-error-type": type(error).__name__.encode(),
            "x-dlq-source-topic": delivery.topic.encode(),
            "x-dlq-source-partition": str(delivery.partition).encode(),
            "x-dlq-source-offset": str(delivery.offset).encode(),
            "x-dlq-service": self.name.encode(),
        }
        if tries:
            headers["x-dlq-tries"] = str(tries).encode()
        fut = await self._dlq(delivery.topic).send(
            key=delivery.key.encode() if delivery.key is not None else None, value=value, headers=headers
        )
        await fut
        metrics.DEAD_LETTERS.labels(self.name, delivery.topic).inc()
        log.warning(
            "dead-lettered a record",
            extra={
                "topic": delivery.topic,
                "partition": delivery.partition,
                "offset": delivery.offset,
                "error": str(error),
            },
        )

    # -- handlers -------------------------------------------------------------

    def consume(self, topic: str) -> Callable[[Handler], Handler]:
        """Register `handler(record, delivery)` for every valid record on a catalog topic.

        It is called for each record of a partition in offset order; after each batch the
        service's `batch_ends` write what the batch changed.
        """

        def register(handler: Handler) -> Handler:
            async def handle(batch: list[tuple[Record, Delivery]]) -> None:
                for record, delivery in batch:
                    await handler(record, delivery)
                for end in self.batch_ends:
                    await end()

            self._route(topic, handle)
            return handler

        return register

    def consume_batches(self, topics: Iterable[str], *, size: int) -> Callable[[BatchHandler], BatchHandler]:
        """Register `handler(batch)` for the valid records of each fetched batch (up to `size` at once).

        A batch's offsets are committed only after the handler returns, so an offset is
        committed only once what the handler did with it is durable.
        """

        def register(handler: BatchHandler) -> BatchHandler:
            async def handle(batch: list[tuple[Record, Delivery]]) -> None:
                for start in range(0, len(batch), size):
                    await handler(batch[start:start + size])

            for topic in topics:
                self._route(topic, handle)
            return handler

        return register

    def _route(self, topic: str, handle: BatchHandler) -> None:
        """Subscribe to a catalog topic and hand its records to `handle` (common/delivery.py)."""
        topic_spec = spec(topic)
        self.reads.add(topic)
        deployed = self.settings.topic(topic)
        source = self.raw_topic(deployed, config=topic_configs(topic_spec))
        self.app.topics.add(source)  # subscribed like an agent's topic; records come by the route
        if topic_spec.compacted:
            self.app.compacted_routes.add(deployed)
        in_counter = metrics.RECORDS_IN

        async def route(partition: int, fetched: list[ConsumerRecord]) -> None:
            batch: list[tuple[Record, Delivery]] = []
            for raw in fetched:
                delivery = Delivery.of(raw)
                try:
                    record = await self._decode(raw.value)
                    if not topic_spec.accepts(record):
                        raise DecodeError(f"{type(record).__name__} is not a record of {topic_spec.name}")
                except DecodeError as exc:
                    await self.dead_letter(delivery, raw.value, exc)
                    continue
                metrics.child(in_counter, self.name, topic, type(record).__name__).inc()
                batch.append((record, delivery))
            if batch:
                await self._run(batch, handle)

        self.app.routes[deployed] = route

    async def _decode(self, value: bytes | None) -> Record:
        """The record; while the schema registry is out, wait and try again (the partition waits)."""
        while True:
            try:
                return self.codec.decode(value)
            except RegistryUnavailable as exc:
                await self._outage(exc, reset=False)

    async def send_out(self, items: list[_Outgoing]) -> None:
        for topic, key, value, headers, counted in items:
            await self.records.send(topic, key, value, None, list(headers.items()) if headers else None)
            counted.inc()

    async def _attempt(self, handle: BatchHandler, batch: list[tuple[Record, Delivery]]) -> None:
        """Handle a batch, then send what it sent; nothing is sent when it fails."""
        outbox: list[_Outgoing] = []
        token = _OUTBOX.set(outbox)
        try:
            await handle(batch)
        finally:
            _OUTBOX.reset(token)
        await self.send_out(outbox)

    async def _run(self, batch: list[tuple[Record, Delivery]], handle: BatchHandler) -> None:
        """Handle a batch; when it fails, its records one at a time (see the module docstring)."""
        try:
            await self._attempt(handle, batch)
            return
        except self.transient_errors as exc:
            await self._outage(exc)
        except Exception as exc:
            if len(batch) == 1:
                await self._retry(batch[0], handle, exc)
                return
            self._reset(exc, batch[0][1], batch_size=len(batch))
        for item in batch:
            await self._retry(item, handle, None)

    async def _retry(self, item: tuple[Record, Delivery], handle: BatchHandler,
                     failed: BaseException | None) -> None:
        """Handle one record, up to `max_tries` tries in all (`failed`: the first try's error)."""
        tries = 0
        error = failed
        while True:
            if error is not None:
                tries += 1
                self._reset(error, item[1], tries=tries)
                if tries >= self.max_tries:
                    self.failures += 1
                    metrics.HANDLER_FAILURES.labels(self.name, item[1].topic).inc()
                    await self.dead_letter(item[1], item[1].value, error, tries)
                    return
                await asyncio.sleep(self.retry_backoff_s * tries)
            try:
                await self._attempt(handle, [item])
                return
            except self.transient_errors as exc:
                await self._outage(exc)
                error = None
            except Exception as exc:
                error = exc

    def _reset(self, exc: BaseException, delivery: Delivery, **extra: Any) -> None:
        log.error("handler failed; its batch's state is dropped and the records are tried again",
                  exc_info=exc, extra={"topic": delivery.topic, "partition": delivery.partition,
                                       "offset": delivery.offset, **extra})
        for reset in self.resets:
            reset()

    async def _outage(self, exc: BaseException, reset: bool = True) -> None:
        """A transient error: drop the batch's unsaved state (if any) and wait before trying again."""
        metrics.OUTAGES.labels(self.name, type(exc).__name__).inc()
        log.warning("a dependency failed; trying again", extra={"error": repr(exc)})
        if reset:
            for forget in self.resets:
                forget()
        await asyncio.sleep(1.0)

    # -- health ---------------------------------------------------------------

    def _add_health(self) -> None:
        service = self

        @self.app.page("/healthz")
        async def healthz(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
            app = service.app
            consumer_up = bool(app.consumer.started)
            assigned = (
                sorted(f"{tp.topic}:{tp.partition}" for tp in app.assignor.assigned_actives())
                if consumer_up
                else []
            )
            body = {
                "service": service.name,
                # ready once it has joined its group: before its first assignment a worker reads nothing
                "status": "ok" if consumer_up and service.assignments and not app.rebalancing else "starting",
                "rebalancing": bool(app.rebalancing),
                "assignments": service.assignments,
                "assigned_partitions": len(assigned),
                "assigned": assigned,
                "uptime_s": round(time.time() - service._started, 1),
                "pid": os.getpid(),
            }
            consumer = app.consumer if consumer_up else None
            if isinstance(consumer, FastConsumer):  # the delivery path's counters (common/delivery.py)
                body.update(records_handed=consumer.handed, sought_back=consumer.sought_back)
            for extra in service.health_extras:
                body.update(extra())
            return web.json(body, status=200 if body["status"] == "ok" else 503)

    def main(self) -> NoReturn:
        """Run the worker from the command line (`python -m orderstream.<service> worker`)."""
        if len(sys.argv) > 1 and sys.argv[1] == "worker":
            asyncio.run(self.ensure_changelogs())
            for mirror in self.mirrors:
                mirror.preload()
        self.app.main()

    async def ensure_changelogs(self, timeout_s: float = 60.0) -> None:
        """Create the tables' changelog topics and wait until the broker reports their partitions.

        Faust creates them too, but on a fresh broker the first record can arrive before the
        new topic's metadata has its partitions, and Faust then refuses the table write
        (PartitionsMismatch, "has 0 partitions") and the worker exits.
        """
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        wanted = {
            t.changelog_topic.get_topic_name(): t.partitions or self.settings.partitions
            for t in self.app.tables.values()
        }
        if not wanted:
            return
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            missing = set(wanted) - set(await admin.list_topics())
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(name, wanted[name], 1, topic_configs={"cleanup.policy": "compact"})
                        for name in sorted(missing)
                    ]
                )
            deadline = time.monotonic() + timeout_s
            while True:
                described = await admin.describe_topics(list(wanted))
                ready = {d["topic"] for d in described if len(d["partitions"]) == wanted[d["topic"]]}
                if ready == set(wanted):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"changelog topics not ready: {sorted(set(wanted) - ready)}")
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

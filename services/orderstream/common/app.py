"""The service template: a Faust app wired with settings, the Avro codec, health, metrics and DLQs.

A service builds one `Service`, declares its inputs with `@service.consume(topic)`
and its outputs with `service.output(topic)`, and runs `service.main()`.

Error policy (see ../shared/STYLE.md):
- A record that cannot be decoded, fails validation, or is not a record type
  the topic carries goes to `<topic>.dlq` with the error in headers; the
  agent goes on with the next record.
- A business outcome is never an exception: handlers emit rejection events.
- Anything else a handler raises is a bug. Faust acknowledges the record of an
  agent that raised (its stream acks in a `finally`), which would lose it, so
  the worker exits at once instead, before the ack; the record is redelivered
  when the worker restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import faust

from orderstream.common import faust_guard, metrics
from orderstream.common.codec import AvroCodec, DecodeError, schema_ids
from orderstream.common.gaps import Raw, Sequencer
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

    @classmethod
    def of(cls, raw: Raw) -> Delivery:
        key = raw.key.decode(errors="replace") if raw.key is not None else None
        return cls(raw.topic, raw.partition, raw.offset, key, raw.headers)


Handler = Callable[[Record, Delivery], Awaitable[None]]
BatchHandler = Callable[[list[tuple[Record, Delivery]]], Awaitable[None]]


def hard_exit(exc: BaseException, delivery: Delivery) -> NoReturn:
    """Default reaction to a handler bug: log loudly, leave the record unacknowledged, exit."""
    log.critical(
        "handler failed; exiting before the record is acknowledged",
        exc_info=exc,
        extra={"topic": delivery.topic, "partition": delivery.partition, "offset": delivery.offset},
    )
    _exit_now()


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
    """Faust's app whose producer flush also flushes the service's own `RecordProducer`.

    Faust flushes its producer before it commits offsets, before it gives partitions
    away in a rebalance, and when it stops: the outputs and table writes sent through
    the `RecordProducer` are then in the broker too.
    """

    records: RecordProducer | None = None
    sequencer: Sequencer | None = None

    async def on_start(self) -> None:
        await super().on_start()
        if self.records is not None:
            self.records.start()

    async def on_stop(self) -> None:
        await super().on_stop()  # flushes the producers
        if self.records is not None:
            self.records.stop()
        if self.sequencer is not None:
            await self.sequencer.stop()  # its private consumer, if it ever read missing records

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
        """Queue a record already encoded by this service's codec (see common/producer.py)."""
        await self._service.records.send(self._name, key.encode(), value, None,
                                         list(headers.items()) if headers else None)
        self._counted.inc()


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
        on_handler_error: Callable[[BaseException, Delivery], None] = hard_exit,
    ) -> None:
        self.settings = settings
        self.name = settings.service
        faust_guard.install()
        self.codec = AvroCodec(records, schema_ids(settings.schema_registry_url))
        self.on_handler_error = on_handler_error
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
            producer_linger=settings.producer_linger_ms / 1000,
            broker_heartbeat_interval=settings.session_timeout_s / 10,
            logging_config=logging_config(self.name, settings.log_level, settings.worker_id),
        )
        self.app.records = self.records
        self.sequencer = self.app.sequencer = Sequencer(settings.kafka_bootstrap_servers, self.app.conf.id)

        async def partitions_moved(sender: Any, /, *tps: Any, signal: Any, **kwargs: Any) -> None:
            self.sequencer.reset()  # positions are the committed offsets again

        async def assigned(sender: Any, /, *tps: Any, signal: Any, **kwargs: Any) -> None:
            self.assignments += 1

        self.app.on_partitions_revoked.connect(partitions_moved)
        self.app.on_partitions_assigned.connect(partitions_moved)
        self.app.on_partitions_assigned.connect(assigned)
        self.assignments = 0  # rebalances this worker has been through (0: not yet part of its group)
        metrics.setup_faust_metrics(self.app, name_prefix=f"faust_{self.name}")
        self._dlqs: dict[str, faust.TopicT] = {}
        self._started = time.time()
        self.health_extras: list[Callable[[], dict[str, Any]]] = []
        self.mirrors: list[Any] = []  # common.mirror.Mirror, read in full before the worker starts
        self.reads: set[str] = set()  # catalog topics this service consumes (checked against the catalog)
        self.writes: set[str] = set()  # catalog topics it produces
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

    async def dead_letter(self, delivery: Delivery, value: bytes | None, error: BaseException) -> None:
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

    # -- agents ---------------------------------------------------------------

    def consume(self, topic: str) -> Callable[[Handler], Handler]:
        """Register `handler(record, delivery)` for every valid record on a catalog topic."""
        topic_spec = spec(topic)
        self.reads.add(topic)
        deployed = self.settings.topic(topic)
        source = self.raw_topic(deployed, config=topic_configs(topic_spec))

        def register(handler: Handler) -> Handler:
            async def agent(stream: faust.StreamT[bytes]) -> None:
                async for event in stream.events():
                    await self._handle(event, topic_spec, handler)

            agent.__name__ = agent.__qualname__ = f"{handler.__name__}_agent"
            self.app.agent(source, name=f"{self.name}.{handler.__name__}")(agent)
            return handler

        return register

    def consume_batches(
        self, topics: Iterable[str], *, size: int, within_s: float
    ) -> Callable[[BatchHandler], BatchHandler]:
        """Register `handler(batch)` for batches of up to `size` valid records, or what came in `within_s`.

        The batch's records are acknowledged only after the handler returns, so an offset is
        committed only once what the handler did with it is durable.
        """
        specs = [spec(t) for t in topics]
        self.reads.update(t.name for t in specs)
        sources = [self.raw_topic(self.settings.topic(t.name), config=topic_configs(t)) for t in specs]
        by_name = {self.settings.topic(t.name): t for t in specs}
        source = sources[0] if len(sources) == 1 else self.raw_topic(*[s.get_topic_name() for s in sources])

        def register(handler: BatchHandler) -> BatchHandler:
            async def write(stream: faust.StreamT[bytes], batch: list[tuple[Record, Delivery]],
                            events: list[faust.EventT[bytes]]) -> None:
                if batch:
                    try:
                        await handler(batch)
                    except Exception as exc:  # a bug: see the module docstring
                        self.on_handler_error(exc, batch[0][1])
                        raise
                for event in events:
                    await stream.ack(event)

            async def agent(stream: faust.StreamT[bytes]) -> None:
                manual: Any = stream  # noack_take is on faust.Stream, not on its StreamT type
                # One batch is handled while the next one is fetched and decoded; batches are
                # handled one at a time and in order, and each is acknowledged after its handler.
                writing: asyncio.Future[None] | None = None
                try:
                    async for events in manual.noack_take(size, within=within_s):
                        batch: list[tuple[Record, Delivery]] = []
                        for event in events:
                            topic = by_name[event.message.topic]
                            for raw in await self._in_order(Raw.of_event(event), topic):
                                decoded = await self._decode(raw, topic)
                                if decoded is not None:
                                    batch.append(decoded)
                        if writing is not None:
                            await writing
                        writing = asyncio.ensure_future(write(stream, batch, events))
                    if writing is not None:
                        await writing
                finally:
                    if writing is not None and not writing.done():
                        writing.cancel()  # not acknowledged: redelivered, and the handler is idempotent

            agent.__name__ = agent.__qualname__ = f"{handler.__name__}_agent"
            self.app.agent(source, name=f"{self.name}.{handler.__name__}")(agent)
            return handler

        return register

    async def _in_order(self, raw: Raw, topic: TopicSpec) -> list[Raw]:
        """The records to handle now, in offset order (see common/gaps.py).

        Offsets of a compacted topic are not consecutive, so those records are taken as they come.
        Failing to read missing records back is treated like a handler bug: the worker exits.
        """
        if topic.compacted:
            return [raw]
        try:
            return await self.sequencer.in_order(raw)
        except Exception as exc:  # the broker would not give records back: exit, they come again
            self.on_handler_error(exc, Delivery.of(raw))
            raise

    async def _decode(self, raw: Raw, topic: TopicSpec) -> tuple[Record, Delivery] | None:
        """The record and where it came from; None when it went to the dead-letter topic."""
        delivery = Delivery.of(raw)
        try:
            record = self.codec.decode(raw.value)
            if not topic.accepts(record):
                raise DecodeError(f"{type(record).__name__} is not a record of {topic.name}")
        except DecodeError as exc:
            await self.dead_letter(delivery, raw.value, exc)
            return None
        metrics.child(metrics.RECORDS_IN, self.name, topic.name, type(record).__name__).inc()
        return record, delivery

    async def _handle(self, event: Any, topic: TopicSpec, handler: Handler) -> None:
        for raw in await self._in_order(Raw.of_event(event), topic):
            decoded = await self._decode(raw, topic)
            if decoded is None:
                continue
            record, delivery = decoded
            try:
                await handler(record, delivery)
            except Exception as exc:  # a bug: see the module docstring
                self.on_handler_error(exc, delivery)
                raise

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
            }
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

"""The producer of a service's outputs and table changelogs: librdkafka (confluent-kafka).

Faust's own producer (aiokafka) costs a loaded worker about 15 µs of Python per
record on the event loop, and a matcher command writes about seven records. Here
`produce()` hands the record to librdkafka, whose threads batch, send and retry it
off the event loop (and off the GIL): 2 to 3 µs per record.

Delivery is idempotent (no duplicate or reordered record from a retry) with acks
from all in-sync replicas. `flush()` returns once every record produced before it
was called is stored by the broker; the template makes Faust's producer flush call
it, so Faust commits an input offset only after the outputs of that input are in
the broker (as it does for its own producer). A record the broker never takes
cannot be allowed to pass a commit: the worker exits at once (`on_fatal`), its
inputs are not committed, and they are delivered again.

The partitioner is Kafka's (murmur2 of the key, as the Java client and aiokafka),
so a key lands on the same partition whichever client wrote it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message
from confluent_kafka import Producer as _Producer

log = logging.getLogger(__name__)

Headers = list[tuple[str, str | bytes | None]]


class RecordProducer:
    """Sends records through librdkafka; one per worker, shared by its outputs and tables."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        client_id: str,
        linger_ms: float,
        on_fatal: Callable[[str], None],
        delivery_timeout_s: float = 120.0,
    ) -> None:
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            # librdkafka leaves Nagle on by default: a small request written while another is
            # unacknowledged can wait for the ACK. Every hop of the order path is small records.
            "socket.nagle.disable": True,
            "partitioner": "murmur2_random",  # Kafka's: murmur2 of the key (no key: random)
            "message.timeout.ms": int(delivery_timeout_s * 1000),
            "queue.buffering.max.messages": 500_000,
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            # librdkafka's own log lines (a failed connect every few 100 ms in an outage) go through
            # Python logging, where the Repeats filter lets one a kind through per window
            "logger": logging.getLogger(f"{__name__}.librdkafka"),
        }
        self._on_fatal = on_fatal
        self._producer: _Producer | None = None  # started with the worker (or by the first record)
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.produced = 0
        self.delivered = 0  # stored by the broker, or failed (then the worker exits)

    # -- sending --------------------------------------------------------------

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None,
        partition: int | None = None, headers: Headers | None = None,
    ) -> None:
        """Queue a record (None value: a tombstone). Waits only while librdkafka's queue is full."""
        producer = self._producer or self.start()
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key, headers=headers)
                else:
                    producer.produce(topic, value, key, partition, headers=headers)
            except BufferError:  # queue full: the broker is behind; let the loop (and it) move on
                await asyncio.sleep(0.005)
                continue
            self.produced += 1
            return

    async def flush(self) -> None:
        """Wait until every record produced so far is stored by the broker."""
        target = self.produced
        if self.delivered >= target:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.append((target, loop, done))
        self._wake()  # the last report may have come before the waiter was there
        await done

    def stop(self) -> None:
        """Stop serving delivery reports; `flush()` first, so nothing is still on its way."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join(5)

    # -- librdkafka's side ------------------------------------------------------

    def start(self) -> _Producer:
        """Connect now (the worker calls it as it starts): the first record does not wait for the
        connection and the idempotent producer id, which on a fresh broker can take seconds."""
        if self._producer is None:
            self._producer = _Producer(self._config)
        if self._poller is None or not self._poller.is_alive():
            self._stopping.clear()
            self._poller = threading.Thread(target=self._serve, name="record-producer", daemon=True)
            self._poller.start()
        return self._producer

    def _serve(self) -> None:
        """Serve delivery reports and errors (they run in this thread, not on the event loop)."""
        assert self._producer is not None
        while not self._stopping.is_set():
            self._producer.poll(0.1)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self.delivered += 1
        if err is not None:
            self._on_fatal(f"the broker did not take a record for {msg.topic()}[{msg.partition()}]: {err}")
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        """Resolve the flushes whose records are all delivered (from any thread)."""
        with self._lock:
            ready = [w for w in self._waiters if w[0] <= self.delivered]
            self._waiters = [w for w in self._waiters if w[0] > self.delivered]
        for _, loop, done in ready:
            loop.call_soon_threadsafe(_resolve, done)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._on_fatal(f"fatal producer error: {err}")
        else:  # e.g. a broker unreachable for a while: librdkafka retries until the timeout
            # one kind per librdkafka error code: the Repeats filter lets one a window through
            log.warning(f"producer error {err.name()}", extra={"error": err.str()})


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)

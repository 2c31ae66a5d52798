"""Prometheus metrics every service exports on /metrics (beside Faust's own)."""

from __future__ import annotations

from typing import Any

from faust.sensors.monitor import Monitor
from faust.sensors.prometheus import PrometheusMonitor, setup_prometheus_sensors
from faust.types import TP, AppT, CollectionT, EventT, Message, StreamT
from prometheus_client import Counter

RECORDS_IN = Counter(
    "orderstream_records_in_total", "Records decoded and handled", ["service", "topic", "record"]
)
RECORDS_OUT = Counter(
    "orderstream_records_out_total", "Records produced", ["service", "topic"]
)
DEAD_LETTERS = Counter(
    "orderstream_dead_letters_total", "Records sent to a dead-letter topic", ["service", "topic"]
)
HANDLER_FAILURES = Counter(
    "orderstream_handler_failures_total",
    "Records dead-lettered after their handler failed every try", ["service", "topic"],
)
OUTAGES = Counter(
    "orderstream_outages_total", "Batches tried again after a dependency failed", ["service", "error"]
)


_children: dict[tuple[Any, tuple[Any, ...]], Any] = {}


def child(metric: Any, *values: Any) -> Any:
    """`metric.labels(*values)`, looked up once: `labels()` costs more than the count itself."""
    key = (metric, values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


class FaustMonitor(PrometheusMonitor):
    """Faust's Prometheus sensor with the same metrics, minus a `labels()` lookup per record.

    Faust's sensor looks up labelled children (and for streams, normalizes the stream's
    label with a regex) on every record: a tenth of a loaded matcher's time. Here the
    children come from `child()`, and each stream's label is made once.
    """

    def __init__(self, metrics: Any, **kwargs: Any) -> None:
        super().__init__(metrics, **kwargs)
        self._streams: dict[int, tuple[StreamT[Any], Any]] = {}

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        Monitor.on_message_in(self, tp, offset, message)
        m = self._metrics
        m.messages_received.inc()
        m.active_messages.inc()
        child(m.messages_received_per_topics, tp.topic).inc()
        child(m.messages_received_per_topics_partition, tp.topic, tp.partition).set(offset)

    def on_stream_event_in(
        self, tp: TP, offset: int, stream: StreamT[Any], event: EventT[Any]
    ) -> dict[str, Any] | None:
        state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
        m = self._metrics
        m.total_events.inc()
        m.total_active_events.inc()
        owner, child = self._streams.get(id(stream), (None, None))
        if owner is not stream or child is None:  # new stream (an id can be reused once a stream is gone)
            child = m.total_events_per_stream.labels(stream=f"stream.{self._stream_label(stream)}.events")
            self._streams[id(stream)] = (stream, child)
        child.inc()
        return state

    def on_table_get(self, table: CollectionT, key: Any) -> None:
        Monitor.on_table_get(self, table, key)
        self._table_op(table, self.KEYS_RETRIEVED)

    def on_table_set(self, table: CollectionT, key: Any, value: Any) -> None:
        Monitor.on_table_set(self, table, key, value)
        self._table_op(table, self.KEYS_UPDATED)

    def on_table_del(self, table: CollectionT, key: Any) -> None:
        Monitor.on_table_del(self, table, key)
        self._table_op(table, self.KEYS_DELETED)

    def _table_op(self, table: CollectionT, operation: str) -> None:
        child(self._metrics.table_operations, f"table.{table.name}", operation).inc()


def setup_faust_metrics(app: AppT, name_prefix: str) -> None:
    """Faust's metrics and the /metrics page (beside the counters above), with `FaustMonitor`."""
    setup_prometheus_sensors(app, pattern="/metrics", name_prefix=name_prefix)
    previous: Any = app.monitor
    app.monitor = FaustMonitor(metrics=previous._metrics)

"""Prometheus metrics every service exports on /metrics (beside Faust's own)."""

from __future__ import annotations

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

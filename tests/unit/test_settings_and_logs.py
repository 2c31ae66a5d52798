"""Settings from the environment, unknown keys refused; JSON logs; topic catalog facts."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from orderstream.common.logs import JsonFormatter, Repeats
from orderstream.common.records import ALL_RECORDS
from orderstream.common.topics import CATALOG, KeyKind, dlq_name
from orderstream.matcher.settings import MatcherSettings
from tests.conftest import KAFKA_IMAGE, MONGO_IMAGE

ROOT = Path(__file__).resolve().parents[2]


def test_settings_read_shared_and_service_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("ORDERSTREAM_TOPIC_PREFIX", "dev.")
    monkeypatch.setenv("ORDERSTREAM_MATCHER_WEB_PORT", "7001")
    monkeypatch.setenv("ORDERSTREAM_GATEWAY_WEB_PORT", "9999")  # another service's key: not ours
    s = MatcherSettings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert (s.topic("md.book"), s.web_port) == ("dev.md.book", 7001)
    with pytest.raises(ValidationError):
        s.web_port = 1  # type: ignore[misc]


def test_unknown_service_key_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSTREAM_MATCHER_WEB_PROT", "7001")
    with pytest.raises(ValidationError, match="ORDERSTREAM_MATCHER_WEB_PROT"):
        MatcherSettings()


def test_bad_value_names_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSTREAM_MATCHER_WEB_PORT", "seventy")
    with pytest.raises(ValidationError, match="web_port"):
        MatcherSettings()


def test_json_log_line_carries_extras() -> None:
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "dead-lettered %s", ("a",), None)
    record.topic = "order.commands"
    doc = json.loads(JsonFormatter("matcher", "w1").format(record))
    assert doc["msg"] == "dead-lettered a" and doc["topic"] == "order.commands"
    assert (doc["service"], doc["worker"], doc["level"]) == ("matcher", "w1", "WARNING")


def test_a_client_library_repeating_itself_logs_one_line_per_window_with_the_count() -> None:
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    handler.addFilter(Repeats(window_s=0.3))
    kafka, ours = logging.getLogger("aiokafka.conn.test"), logging.getLogger("orderstream.test")
    for logger in (kafka, ours):
        logger.addHandler(handler)
        logger.propagate = False
    try:
        for n in range(100):  # a broker outage: the same complaint about each node, over and over
            kafka.error("Unable connect to node with id %s: %s", n % 3, "refused")
            ours.warning("handler failed for offset %s", n)
        kafka.warning("Heartbeat failed")  # another kind: through
        assert [r.getMessage() for r in lines if r.name.startswith("aiokafka")] == [
            "Unable connect to node with id 0: refused", "Heartbeat failed"]
        assert sum(1 for r in lines if r.name.startswith("orderstream")) == 100  # ours: all of them
        time.sleep(0.35)
        kafka.error("Unable connect to node with id %s: %s", 1, "refused")
        assert lines[-1].getMessage().endswith("id 1: refused") and lines[-1].repeated == 99  # type: ignore[attr-defined]
    finally:
        for logger in (kafka, ours):
            logger.removeHandler(handler)


def test_every_record_travels_on_some_topic_and_keys_are_consistent() -> None:
    carried = {r for t in CATALOG for r in t.records}
    from orderstream.common.records import PriceLevel  # nested in BookUpdate/DepthSnapshot only
    assert set(ALL_RECORDS) - carried == set() or set(ALL_RECORDS) - carried == {PriceLevel}
    for t in CATALOG:
        assert t.key in KeyKind and t.name.count(".") == 1
        assert dlq_name(t.name) == f"{t.name}.dlq"


def test_testcontainers_use_the_compose_images() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    images = set(re.findall(r"^\s*image:\s*(\S+)", compose, re.M))
    assert {KAFKA_IMAGE, MONGO_IMAGE} <= images

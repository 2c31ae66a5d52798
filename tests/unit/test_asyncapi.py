"""The AsyncAPI document cannot drift: it equals what the catalog generates, and the catalog's
writers and readers are what each service really declares."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from orderstream.common import asyncapi
from orderstream.common.schemas import load_sources
from orderstream.common.topics import CATALOG
from orderstream.gateway import core as gateway

ROOT = Path(__file__).resolve().parents[2]
FAUST_SERVICES = ("collateral", "router", "matcher", "execution", "collector")


def test_the_committed_document_is_the_generated_one() -> None:
    committed = (ROOT / asyncapi.DOCUMENT).read_text()
    assert committed == asyncapi.render(), "docs/asyncapi.yaml is stale: run `orderstream asyncapi`"


def test_every_topic_is_a_channel_with_its_key_records_writers_and_readers() -> None:
    doc = yaml.safe_load((ROOT / asyncapi.DOCUMENT).read_text())
    assert doc["asyncapi"] == "3.0.0"
    sources = load_sources()
    for t in CATALOG:
        channel = doc["channels"][t.name.replace(".", "_")]
        assert channel["address"] == t.name
        assert set(channel["messages"]) == {rec.__name__ for rec in t.records}
        for rec in t.records:
            message = doc["components"]["messages"][rec.__name__]
            ref = message["payload"]["schema"]["$ref"]
            assert (ROOT / "docs" / ref).resolve().exists(), ref
            assert rec.avro_name in sources and message["x-schema-id"] is not None
        ops = {
            (o["action"], o["tags"][0]["name"])
            for o in doc["operations"].values()
            if o["channel"]["$ref"] == f"#/channels/{t.name.replace('.', '_')}"
        }
        assert ops == {("send", s) for s in t.producers} | {("receive", s) for s in t.consumers}
        dlq = doc["channels"][t.name.replace(".", "_") + "_dlq"]
        assert dlq["address"] == t.name + ".dlq" and set(dlq["messages"]) == {"DeadLetter"}


@pytest.mark.parametrize("service", FAUST_SERVICES)
def test_the_catalog_names_what_each_service_reads_and_writes(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"ORDERSTREAM_{service.upper()}_DATA_DIR", str(tmp_path))
    built = importlib.import_module(f"orderstream.{service}.app").build()
    reads = {t.name for t in CATALOG if service in t.consumers}
    writes = {t.name for t in CATALOG if service in t.producers}
    assert (built.reads, built.writes) == (reads, writes)


def test_the_catalog_names_what_the_gateway_reads_and_writes() -> None:
    assert {t.name for t in CATALOG if "gateway" in t.consumers} == gateway.READS
    assert {t.name for t in CATALOG if "gateway" in t.producers} == gateway.WRITES

"""The Avro contract: locked ids, backward compatibility, generated classes, codec round trips."""

from __future__ import annotations

import io
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderstream.common import codegen, records
from orderstream.common.codec import AvroCodec, DecodeError, EmbeddedIds, schema_ids
from orderstream.common.records import ALL_RECORDS, SubmitOrder
from orderstream.common.schemas import (
    CATALOG_FILE,
    SCHEMA_DIR_ENV,
    Catalog,
    SchemaError,
    check,
    load_sources,
    plan_lock,
    schema_dir,
)

RECORDS_PY = Path(records.__file__)


def test_every_schema_is_locked_and_compatible_with_its_previous_version() -> None:
    assert check() == []


def test_generated_records_match_the_schemas() -> None:
    assert RECORDS_PY.read_text() == codegen.generate(), "run `make schemas-lock`"


def test_record_class_names_equal_avro_names() -> None:
    sources = load_sources()
    assert {c.avro_name for c in ALL_RECORDS} == set(sources)
    for cls in ALL_RECORDS:
        assert cls.avro_name.rsplit(".", 1)[1] == cls.__name__


def test_no_float_on_the_wire() -> None:
    def walk(t: Any) -> None:
        if isinstance(t, list):
            for x in t:
                walk(x)
        elif isinstance(t, dict):
            assert t.get("type") not in {"float", "double"}
            for f in t.get("fields", []):
                walk(f["type"])
            if "items" in t:
                walk(t["items"])
        else:
            assert t not in {"float", "double"}
    for schema in load_sources().values():
        walk(schema)


@pytest.fixture
def schema_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "schemas"
    shutil.copytree(schema_dir(), root)
    monkeypatch.setenv(SCHEMA_DIR_ENV, str(root))
    return root


def _edit(root: Path, rel: str, change: Any) -> None:
    path = root / rel
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_adding_a_field_without_default_is_refused(schema_copy: Path) -> None:
    _edit(schema_copy, "order/SubmitOrder.avsc",
          lambda d: d["fields"].append({"name": "venue_hint", "type": "string"}))
    with pytest.raises(SchemaError, match="venue_hint"):
        plan_lock(Catalog.load(schema_copy / CATALOG_FILE), load_sources(schema_copy))
    assert any("venue_hint" in p for p in check(schema_copy))


def test_changing_a_field_type_is_refused(schema_copy: Path) -> None:
    def to_long(d: dict[str, Any]) -> None:
        next(f for f in d["fields"] if f["name"] == "quantity")["type"] = "long"
    _edit(schema_copy, "order/SubmitOrder.avsc", to_long)
    with pytest.raises(SchemaError, match="SubmitOrder"):
        plan_lock(Catalog.load(schema_copy / CATALOG_FILE), load_sources(schema_copy))


def test_removing_a_record_is_refused(schema_copy: Path) -> None:
    (schema_copy / "order" / "OrderExpired.avsc").unlink()
    with pytest.raises(SchemaError, match="OrderExpired"):
        plan_lock(Catalog.load(schema_copy / CATALOG_FILE), load_sources(schema_copy))


def test_compatible_change_gets_a_new_id_and_old_records_still_decode(schema_copy: Path) -> None:
    old_catalog = Catalog.load(schema_copy / CATALOG_FILE)
    old_ids = {v.id for v in old_catalog.by_id().values()}
    old_codec = AvroCodec([SubmitOrder], EmbeddedIds(old_catalog))
    order = SubmitOrder(command_id="c", ts_event=5, account_id="a", order_id="o", client_order_id="x",
                        symbol="BTC-USD", side="SELL", order_type="LIMIT", time_in_force="GTC",
                        quantity=Decimal("2"), price=Decimal("10.5"))
    old_bytes = old_codec.encode(order)

    _edit(schema_copy, "order/SubmitOrder.avsc", lambda d: d["fields"].append(
        {"name": "memo", "type": ["null", "string"], "default": None}))
    new_catalog, changes = plan_lock(old_catalog, load_sources(schema_copy))
    assert changes == [f"orderstream.order.SubmitOrder v2 -> id {max(old_ids) + 1}"]
    # Every id assigned before keeps its schema.
    assert all(new_catalog.by_id()[i].schema == old_catalog.by_id()[i].schema for i in old_ids)
    # A reader on v2 still decodes v1 bytes (schema resolution by the writer's id).
    new_ids = EmbeddedIds(new_catalog)
    schema = load_sources(schema_copy)["orderstream.order.SubmitOrder"]
    assert new_ids.id_for("orderstream.order.SubmitOrder", schema) == max(old_ids) + 1

    class SubmitOrderV2(SubmitOrder):  # what records.py holds after `make schemas-lock`
        memo: str | None = None

    new_codec = AvroCodec([SubmitOrderV2], new_ids)
    decoded = new_codec.decode(old_bytes)
    assert isinstance(decoded, SubmitOrderV2) and decoded.memo is None
    assert decoded.model_dump(exclude={"memo"}) == order.model_dump()
    assert new_codec.encode(decoded)[1:5] == (max(old_ids) + 1).to_bytes(4, "big")


def test_an_unlocked_schema_cannot_be_encoded(schema_copy: Path) -> None:
    _edit(schema_copy, "order/CancelOrder.avsc", lambda d: d["fields"].append(
        {"name": "memo", "type": ["null", "string"], "default": None}))
    with pytest.raises(SchemaError, match="make schemas-lock"):
        AvroCodec(ALL_RECORDS, schema_ids(None))


D_WIRE_MAX = Decimal("99999999999999999999.999999999999999999")
D_WIRE_MIN = -D_WIRE_MAX
dec = st.decimals(min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=8, allow_nan=False,
                  allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(qty=dec.filter(lambda d: d > 0), price=st.none() | dec, budget=st.none() | dec,
       ts=st.integers(min_value=-(2**63), max_value=2**63 - 1), text=st.text(max_size=40),
       post=st.booleans())
def test_submit_order_round_trips_exactly(
    qty: Decimal, price: Decimal | None, budget: Decimal | None, ts: int, text: str, post: bool
) -> None:
    codec = AvroCodec([SubmitOrder], schema_ids(None))
    order = SubmitOrder(command_id=text, ts_event=ts, account_id=text, order_id="o",
                        client_order_id=text, symbol="ETH-USD", side="BUY", order_type="MARKET",
                        time_in_force="IOC",
                        quantity=qty, price=price, quote_budget=budget, post_only=post)
    assert codec.decode(codec.encode(order)) == order


WIRE = st.decimals(min_value=D_WIRE_MIN, max_value=D_WIRE_MAX, places=18, allow_nan=False,
                   allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(amount=WIRE, free=WIRE, held=WIRE)
def test_decimals_across_the_whole_wire_range_round_trip_exactly(
    amount: Decimal, free: Decimal, held: Decimal
) -> None:
    """Every value of the wire decimal (38 digits, scale 18: 20 integer digits) survives encode and
    decode to the last digit."""
    from orderstream.common.records import Deposited

    codec = AvroCodec([Deposited], schema_ids(None))
    event = Deposited(event_id="e", ts_event=1, account_id="a", asset="USD", amount=amount, free=free,
                      held=held, command_id="c", lot_id="l", source="bank")
    decoded = codec.decode(codec.encode(event))
    assert (decoded.amount, decoded.free, decoded.held) == (amount, free, held)  # type: ignore[attr-defined]


def test_every_record_round_trips() -> None:
    from tests.records_factory import example

    codec = AvroCodec(ALL_RECORDS, schema_ids(None))
    sources = load_sources()
    for cls in ALL_RECORDS:
        rec = example(cls)
        data = codec.encode(rec)
        assert data[0] == 0 and codec.decode(data) == rec, cls.__name__
        # the codec skips model_dump() for records without nested models: the same bytes
        body = io.BytesIO()
        fastavro.schemaless_writer(body, fastavro.parse_schema(sources[cls.avro_name]), rec.model_dump())
        assert data[5:] == body.getvalue(), cls.__name__


@pytest.mark.parametrize("data, message", [
    (b"", "not Confluent-framed"),
    (b"\x01\x00\x00\x00\x01xx", "magic byte 1"),
    (b"\x00\x00\x00\xff\xff", "unknown schema id 65535"),
    (b"\x00\x00\x00\x00\x16\xff\xff\xff", "corrupt Avro body"),
])
def test_bad_bytes_give_specific_errors(data: bytes, message: str) -> None:
    codec = AvroCodec(ALL_RECORDS, schema_ids(None))
    with pytest.raises(DecodeError, match=message):
        codec.decode(data)


def test_ids_are_unique_and_never_reused() -> None:
    catalog = Catalog.load(schema_dir() / CATALOG_FILE)
    ids = [v.id for vs in catalog.subjects.values() for v in vs]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == list(range(1, len(ids) + 1))

"""Avro codec in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, body.

Schema ids come from a Confluent-compatible Schema Registry when a URL is
configured, and from the locked embedded catalog (schemas/catalog.json)
otherwise. Schemas are parsed once per id. Decoding resolves the writer's
schema (found by id) against the reader's current one, so older records
still decode after a compatible change.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol, get_args

import fastavro
from pydantic import BaseModel, ValidationError

from orderstream.common.record import Record
from orderstream.common.schemas import Catalog, SchemaError, canonical, load_sources, schema_dir

MAGIC = 0
_HEADER = struct.Struct(">bI")


class DecodeError(Exception):
    """A record that cannot be turned into a known, valid message; it belongs in a DLQ."""


class RegistryUnavailable(Exception):
    """The schema registry did not answer: the record may be fine, so it is tried again, never
    dead-lettered."""


class SchemaIds(Protocol):
    """Where schema ids come from."""

    def id_for(self, name: str, schema: dict[str, Any]) -> int: ...

    def schema_for(self, schema_id: int) -> dict[str, Any]: ...


class EmbeddedIds:
    """Ids from the locked catalog; the current sources must be locked."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._by_id = {v.id: v.schema for v in catalog.by_id().values()}

    def id_for(self, name: str, schema: dict[str, Any]) -> int:
        latest = self._catalog.latest(name)
        if latest is None or canonical(latest.schema) != canonical(schema):
            raise SchemaError(f"{name} is not locked in the catalog: run `make schemas-lock`")
        return latest.id

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        try:
            return self._by_id[schema_id]
        except KeyError:
            raise DecodeError(f"unknown schema id {schema_id}") from None


class RegistryIds:
    """Ids from a Confluent-compatible Schema Registry (subject = record full name)."""

    def __init__(self, url: str) -> None:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        self._client = SchemaRegistryClient({"url": url})
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, dict[str, Any]] = {}

    def id_for(self, name: str, schema: dict[str, Any]) -> int:
        if name not in self._ids:
            from confluent_kafka.schema_registry import Schema

            self._ids[name] = self._client.register_schema(name, Schema(json.dumps(schema), "AVRO"))
        return self._ids[name]

    def schema_for(self, schema_id: int) -> dict[str, Any]:
        if schema_id not in self._schemas:
            from confluent_kafka.schema_registry.error import SchemaRegistryError

            try:
                found = self._client.get_schema(schema_id)
            except SchemaRegistryError as exc:
                if exc.http_status_code == 404:  # the registry answered: no such id
                    raise DecodeError(f"schema id {schema_id} not in the registry: {exc}") from exc
                raise RegistryUnavailable(f"schema registry error for id {schema_id}: {exc}") from exc
            except Exception as exc:  # connection refused, timeout: an outage, not a bad record
                raise RegistryUnavailable(f"schema registry unreachable for id {schema_id}: {exc!r}") from exc
            self._schemas[schema_id] = json.loads(found.schema_str or "{}")
        return self._schemas[schema_id]


class AvroCodec:
    """Encodes records to, and decodes them from, Confluent-framed Avro."""

    def __init__(self, records: Iterable[type[Record]], ids: SchemaIds) -> None:
        sources = load_sources()
        self._ids = ids
        self._by_name: dict[str, type[Record]] = {}
        self._reader: dict[str, Any] = {}  # full name -> parsed current schema
        self._writer_id: dict[str, int] = {}
        self._flat: dict[type[Record], dict[str, int]] = {}  # flat record -> its decimal fields' scales
        for cls in records:
            schema = sources[cls.avro_name]
            self._by_name[cls.avro_name] = cls
            self._reader[cls.avro_name] = fastavro.parse_schema(schema)
            self._writer_id[cls.avro_name] = ids.id_for(cls.avro_name, schema)
            if not any(_nests_models(f.annotation) for f in cls.model_fields.values()):
                self._flat[cls] = _decimal_scales(schema)
        self._parsed_writers: dict[int, tuple[str, Any]] = {}

    def encode(self, record: Record) -> bytes:
        name = record.avro_name
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, self._writer_id[name]))
        scales = self._flat.get(type(record))
        if scales is None:
            fields = record.model_dump()
        else:
            # A record without nested models holds its fields as they are written: no dump. Its
            # decimals go in as their Avro bytes and its enums as their symbols, which fastavro
            # writes as they are (its own Decimal conversion took half of an encode).
            fields = {k: (_unscaled(v, scales[k]) if k in scales and v is not None
                          else v.value if isinstance(v, Enum) else v)
                      for k, v in record.__dict__.items()}
        fastavro.schemaless_writer(buf, self._reader[name], fields)
        return buf.getvalue()

    def decode(self, data: bytes | None) -> Record:
        """The record in `data`; DecodeError says precisely why it is not one."""
        if data is None or len(data) < _HEADER.size:
            raise DecodeError(f"not Confluent-framed Avro: {0 if data is None else len(data)} bytes")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise DecodeError(f"not Confluent-framed Avro: magic byte {magic}")
        name, writer = self._writer(schema_id)
        cls = self._by_name.get(name)
        if cls is None:
            raise DecodeError(f"record {name} (schema id {schema_id}) is not expected here")
        # written with the current schema: nothing to resolve (a third of the read's cost)
        reader = None if schema_id == self._writer_id[name] else self._reader[name]
        try:
            raw = fastavro.schemaless_reader(io.BytesIO(data[_HEADER.size:]), writer, reader)
        except Exception as exc:  # fastavro raises many types for a corrupt body
            raise DecodeError(f"{name}: corrupt Avro body: {exc!r}") from exc
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise DecodeError(f"{name}: invalid: {_fields(exc)}") from exc

    def _writer(self, schema_id: int) -> tuple[str, Any]:
        if schema_id not in self._parsed_writers:
            schema = self._ids.schema_for(schema_id)
            name = f"{schema['namespace']}.{schema['name']}"
            self._parsed_writers[schema_id] = (name, fastavro.parse_schema(schema))
        return self._parsed_writers[schema_id]


def _decimal_scales(schema: dict[str, Any]) -> dict[str, int]:
    """The top-level fields of a record schema that are Avro decimals (alone or in a union): their scale."""
    out: dict[str, int] = {}
    for f in schema.get("fields", []):
        for t in f["type"] if isinstance(f["type"], list) else [f["type"]]:
            if isinstance(t, dict) and t.get("logicalType") == "decimal" and t.get("type") == "bytes":
                out[f["name"]] = int(t.get("scale", 0))
    return out


def _unscaled(value: Decimal, scale: int) -> bytes:
    """An Avro bytes-decimal: the unscaled integer, big-endian two's complement, as fastavro writes it."""
    scaled = value.scaleb(scale)
    unscaled = int(scaled)
    if unscaled != scaled:
        raise ValueError(f"{value} has more than {scale} decimal places")
    return unscaled.to_bytes((unscaled.bit_length() + 8) // 8, byteorder="big", signed=True)


def _nests_models(annotation: Any) -> bool:
    """Whether a field's type holds a pydantic model anywhere (then a dump is needed)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_nests_models(arg) for arg in get_args(annotation))


def _fields(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def schema_ids(registry_url: str | None) -> SchemaIds:
    """The id source for this deployment: the registry when configured, else the catalog."""
    if registry_url:
        return RegistryIds(registry_url)
    return EmbeddedIds(Catalog.load(schema_dir() / "catalog.json"))

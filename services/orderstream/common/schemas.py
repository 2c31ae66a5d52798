"""The Avro contracts: `.avsc` files under schemas/ and the locked catalog of their versions.

`schemas/catalog.json` records every version of every record schema that was
ever published, with the schema id it was given. Ids are assigned once, in
order, and never change, so a record written years ago still decodes. A new
version is accepted only when it can read data written with the previous one
(Avro BACKWARD compatibility, checked with Apache Avro's own checker).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_DIR_ENV = "ORDERSTREAM_SCHEMA_DIR"
CATALOG_FILE = "catalog.json"


def schema_dir() -> Path:
    """Where the contracts live: $ORDERSTREAM_SCHEMA_DIR or the repository's schemas/."""
    env = os.environ.get(SCHEMA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "schemas"


def canonical(schema: Any) -> str:
    """A stable text form used to tell whether two schema documents are the same."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def fullname(schema: dict[str, Any]) -> str:
    return f"{schema['namespace']}.{schema['name']}"


class SchemaError(Exception):
    """The schema files and the locked catalog disagree, or a change is incompatible."""


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    id: int
    schema: dict[str, Any]


@dataclass
class Catalog:
    """Locked schema versions by subject (the record's full name)."""

    subjects: dict[str, list[SchemaVersion]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        return cls({
            subject: [SchemaVersion(subject, v["version"], v["id"], v["schema"]) for v in versions]
            for subject, versions in raw["subjects"].items()
        })

    def dump(self, path: Path) -> None:
        doc = {
            "about": "Locked Avro schema versions and their ids. Written by `make schemas-lock`; "
                     "never edit by hand: ids are a public contract.",
            "subjects": {
                subject: [{"version": v.version, "id": v.id, "schema": v.schema} for v in versions]
                for subject, versions in sorted(self.subjects.items())
            },
        }
        path.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")

    def latest(self, subject: str) -> SchemaVersion | None:
        versions = self.subjects.get(subject)
        return versions[-1] if versions else None

    def by_id(self) -> dict[int, SchemaVersion]:
        return {v.id: v for versions in self.subjects.values() for v in versions}

    def next_id(self) -> int:
        return max(self.by_id(), default=0) + 1


def load_sources(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every `.avsc` under the schema folder, by full name; one record per file."""
    root = root or schema_dir()
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(root.glob("*/*.avsc")):
        schema = json.loads(path.read_text())
        name = fullname(schema)
        if schema["name"] != path.stem:
            raise SchemaError(f"{path}: record name {schema['name']!r} must equal the file name")
        if schema["namespace"] != f"orderstream.{path.parent.name}":
            raise SchemaError(f"{path}: namespace must be orderstream.{path.parent.name}")
        if name in out:
            raise SchemaError(f"{path}: {name} defined twice")
        out[name] = schema
    return out


def incompatibilities(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why `reader` cannot read data written with `writer` (empty when it can)."""
    import avro.compatibility
    import avro.schema

    checker = avro.compatibility.ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(
        avro.schema.parse(json.dumps(reader)), avro.schema.parse(json.dumps(writer))
    )
    if result.compatibility is avro.compatibility.SchemaCompatibilityType.compatible:
        return []
    return [str(m) for m in result.messages] or [str(result.compatibility)]


def plan_lock(catalog: Catalog, sources: dict[str, dict[str, Any]]) -> tuple[Catalog, list[str]]:
    """The catalog with every changed source added as a new version, and what changed.

    Raises SchemaError for a backward-incompatible change or a removed record.
    """
    removed = sorted(set(catalog.subjects) - set(sources))
    if removed:
        raise SchemaError(f"records removed from schemas/: {removed}; published contracts stay")
    new = Catalog({s: list(v) for s, v in catalog.subjects.items()})
    changes: list[str] = []
    next_id = catalog.next_id()
    for subject in sorted(sources):
        schema = sources[subject]
        last = new.latest(subject)
        if last is not None and canonical(last.schema) == canonical(schema):
            continue
        if last is not None:
            problems = incompatibilities(schema, last.schema)
            if problems:
                raise SchemaError(
                    f"{subject}: new version cannot read version {last.version}: {'; '.join(problems)}"
                )
        version = SchemaVersion(subject, (last.version + 1) if last else 1, next_id, schema)
        next_id += 1
        new.subjects.setdefault(subject, []).append(version)
        changes.append(f"{subject} v{version.version} -> id {version.id}")
    return new, changes


def check(root: Path | None = None) -> list[str]:
    """Problems that make the sources differ from the locked catalog (empty when in sync)."""
    root = root or schema_dir()
    catalog = Catalog.load(root / CATALOG_FILE)
    try:
        _, changes = plan_lock(catalog, load_sources(root))
    except SchemaError as exc:
        return [str(exc)]
    return [f"not locked: {c} (run `make schemas-lock`)" for c in changes]

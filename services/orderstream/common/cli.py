"""`orderstream` command line: contract maintenance and topic administration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from orderstream.common import codegen
from orderstream.common.schemas import CATALOG_FILE, Catalog, SchemaError, load_sources, plan_lock, schema_dir

RECORDS_PY = Path(__file__).with_name("records.py")


def _schemas_lock(_: argparse.Namespace) -> int:
    root = schema_dir()
    try:
        catalog, changes = plan_lock(Catalog.load(root / CATALOG_FILE), load_sources(root))
    except SchemaError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    catalog.dump(root / CATALOG_FILE)
    RECORDS_PY.write_text(codegen.generate())
    for c in changes:
        print(f"locked {c}")
    print(f"{len(changes)} new schema version(s); records.py regenerated")
    return 0


def _topics_create(args: argparse.Namespace) -> int:
    import asyncio

    from orderstream.common.topics import create_topics

    created = asyncio.run(create_topics(args.bootstrap, prefix=args.prefix, partitions=args.partitions))
    print(f"created {len(created)} topic(s): {', '.join(created) or '-'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orderstream", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("schemas-lock",
                       help="lock new schema versions (compatibility checked) and regenerate records.py")
    p.set_defaults(func=_schemas_lock)
    p = sub.add_parser("topics-create", help="create every catalog topic that is missing")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--partitions", type=int, default=None)
    p.set_defaults(func=_topics_create)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

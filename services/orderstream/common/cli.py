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


def _instruments_load(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from orderstream.ops.platform import publish_instruments

    documents = json.loads(Path(args.file).read_text())["instruments"]
    symbols = asyncio.run(publish_instruments(args.bootstrap, args.prefix, documents))
    print(f"published {len(symbols)} instrument(s): {', '.join(symbols)}")
    return 0


def _asyncapi(args: argparse.Namespace) -> int:
    from orderstream.common.asyncapi import DOCUMENT, render

    text = render()
    if args.out == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.out) if args.out else Path(__file__).resolve().parents[3] / DOCUMENT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    return 0


def _kafka_args(p: argparse.ArgumentParser) -> None:
    from orderstream.ops.tools import default_bootstrap, default_prefix

    p.add_argument("--bootstrap", default=default_bootstrap(), help="default: $KAFKA_BOOTSTRAP_SERVERS")
    p.add_argument("--prefix", default=default_prefix(), help="default: $ORDERSTREAM_TOPIC_PREFIX")


def _tail(args: argparse.Namespace) -> int:
    import asyncio

    from orderstream.ops.tools import tail

    topic = args.topic if args.raw_name else args.prefix + args.topic
    return asyncio.run(
        tail(args.bootstrap, topic, from_beginning=args.from_beginning, limit=args.limit, follow=args.follow)
    )


def _lag(args: argparse.Namespace) -> int:
    import asyncio

    from orderstream.ops.tools import lag

    for service, topics in asyncio.run(lag(args.bootstrap, args.prefix)).items():
        detail = ", ".join(f"{t} {n}" for t, n in sorted(topics.items())) or "no committed offsets"
        print(f"{service:<11} lag {sum(topics.values()):>8}   {detail}")
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    import asyncio

    from orderstream.ops.tools import dlq_replay

    lines = asyncio.run(
        dlq_replay(
            args.bootstrap,
            args.prefix + args.dlq,
            to=args.to,
            dry_run=args.dry_run,
            group=args.prefix + args.group,
        )
    )
    print("\n".join(lines) if lines else "nothing to replay")
    return 0


def _platform(command: str, args: argparse.Namespace) -> int:
    from orderstream.ops import platform

    replicas = getattr(args, "replicas", None)
    return platform.main([command, *(["--replicas", str(replicas)] if replicas is not None else [])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orderstream", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser(
        "schemas-lock", help="lock new schema versions (compatibility checked) and regenerate records.py"
    )
    p.set_defaults(func=_schemas_lock)
    p = sub.add_parser("topics-create", help="create every catalog topic that is missing")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--prefix", default="")
    p.add_argument("--partitions", type=int, default=None)
    p.set_defaults(func=_topics_create)
    p = sub.add_parser("instruments-load", help="publish an instrument file to ref.instruments (compacted)")
    p.add_argument("--file", required=True, help='JSON: {"instruments": [{symbol, base_asset, ...}, ...]}')
    _kafka_args(p)
    p.set_defaults(func=_instruments_load)
    p = sub.add_parser("asyncapi", help="write the AsyncAPI document of every topic (docs/asyncapi.yaml)")
    p.add_argument("--out", default=None, help="default: docs/asyncapi.yaml in the repository; - for stdout")
    p.set_defaults(func=_asyncapi)
    p = sub.add_parser("tail", help="print a topic's records decoded from Avro, one JSON line each")
    p.add_argument("topic", help="catalog name (the prefix is added) or any topic with --raw-name")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--follow", "-f", action="store_true", help="keep waiting for new records")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--raw-name", action="store_true", help="do not add ORDERSTREAM_TOPIC_PREFIX")
    _kafka_args(p)
    p.set_defaults(func=_tail)
    p = sub.add_parser("lag", help="consumer lag per service and topic")
    _kafka_args(p)
    p.set_defaults(func=_lag)
    p = sub.add_parser("dlq-replay", help="send dead-lettered records back to their source topic, once")
    p.add_argument("dlq", help="dead-letter topic, e.g. order.events.dlq (the prefix is added)")
    p.add_argument("--to", default=None, help="target topic instead of the x-dlq-source-topic header")
    p.add_argument("--dry-run", action="store_true", help="list what would be sent; send and commit nothing")
    p.add_argument("--group", default="orderstream-dlq-replay")  # ops.tools.REPLAY_GROUP
    _kafka_args(p)
    p.set_defaults(func=_dlq_replay)
    for name, text in (
        ("up", "run the whole platform (servers, topics, instruments, six services, demo keys)"),
        ("down", "stop what `up` started"),
        ("status", "what runs, and each service's health"),
    ):
        p = sub.add_parser(name, help=text)
        if name == "up":
            p.add_argument("--replicas", type=int, default=None,
                           help="workers per worker service, with Faust standby replicas of their tables "
                           "(default ORDERSTREAM_REPLICAS, else 1; the router stays at 1 with FIX venues)")
        p.set_defaults(func=lambda a, n=name: _platform(n, a))
    p = sub.add_parser("demo", help="live traffic through the gateway, then end-state checks", add_help=False)
    p.set_defaults(func=None)
    args, rest = parser.parse_known_args(argv)
    if args.cmd == "demo":
        from orderstream.ops import demo

        return demo.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

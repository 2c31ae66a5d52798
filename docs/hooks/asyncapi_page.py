"""mkdocs hook: docs/asyncapi.yaml rendered as the docs site's "Topics" page (`make docs`).

The AsyncAPI document is generated from the topic catalog (`orderstream asyncapi`); this page shows
it for reading: one table of the topics (key, retention, writers, readers, records) and each record's
fields from its `.avsc` (the document's `$ref`s, relative to docs/). The official AsyncAPI generator
needs a Node toolchain and templates from the network at build time; this renders the same facts
with what `make install` brings. `render(path)` is the page's Markdown, without mkdocs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

PAGE = "topics.md"
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def avro_type(t: Any) -> str:
    """An Avro type as one short phrase: `decimal(38,18)`, `string or null`, `enum Side`, `array of Leg`."""
    if isinstance(t, list):
        return " or ".join(avro_type(x) for x in t)
    if isinstance(t, str):
        return t if t in PRIMITIVES else t.rsplit(".", 1)[-1]  # a named type defined earlier
    if t.get("logicalType") == "decimal":
        return f"decimal({t['precision']},{t.get('scale', 0)})"
    if t["type"] == "enum":
        return f"enum {t['name']}: " + ", ".join(t["symbols"])
    if t["type"] == "array":
        return f"array of {avro_type(t['items'])}"
    if t["type"] == "map":
        return f"map of {avro_type(t['values'])}"
    if t["type"] == "record":
        return f"record {t['name']} (" + ", ".join(f["name"] for f in t["fields"]) + ")"
    return avro_type(t["type"])


def cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render(spec_path: Path) -> str:
    spec = yaml.safe_load(spec_path.read_text())
    channels: dict[str, Any] = spec["channels"]
    messages: dict[str, Any] = spec["components"]["messages"]
    who: dict[tuple[str, str], list[str]] = {}
    for op in spec["operations"].values():
        channel = op["channel"]["$ref"].rsplit("/", 1)[-1]
        if op["action"] in ("send", "receive") and not channel.endswith("_dlq"):
            names = who.setdefault((channel, op["action"]), [])
            names += [tag["name"] for tag in op.get("tags", []) if tag["name"] not in names]
    lines = [
        "# Topics (AsyncAPI)",
        "",
        cell(spec["info"]["description"]),
        "",
        "This page is rendered by `make docs` from [asyncapi.yaml](asyncapi.yaml) (AsyncAPI "
        f"{spec['asyncapi']}); the YAML file is the contract, this is its reading copy.",
        "",
        "## Topics",
        "",
        "| topic | key | cleanup | retention | written by | read by | records |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, channel in channels.items():
        if name.endswith("_dlq"):
            continue
        config = channel["bindings"]["kafka"]["topicConfiguration"]
        retention = config.get("retention.ms")
        records = ", ".join(f"[{m}](#{m.lower()})" for m in channel["messages"])
        key = channel["description"].removeprefix("Key: ").split(" Written by ")[0]  # the topic's own key
        lines.append(
            f"| `{channel['address']}` | {cell(key)} | {', '.join(config['cleanup.policy'])} | "
            f"{f'{retention / 86_400_000:g} days' if retention else 'kept'} | "
            f"{', '.join(who.get((name, 'send'), []))} | {', '.join(who.get((name, 'receive'), []))} | "
            f"{records} |"
        )
    lines += ["", "Every topic has a dead-letter topic `<topic>.dlq` carrying [DeadLetter](#deadletter).", ""]
    lines += ["## Records", ""]
    for name, message in messages.items():
        lines += [f"### {name}", "", cell(message.get("summary", "")), ""]
        ref = message["payload"].get("schema", {}).get("$ref")
        if ref is None:  # the dead letter: raw bytes and headers
            lines += ["| header | meaning |", "|---|---|"]
            for header, h in message["headers"]["properties"].items():
                lines.append(f"| `{header}` | {cell(h.get('description', ''))} |")
            lines += ["", cell(message["payload"].get("description", "")), ""]
            continue
        schema = json.loads((spec_path.parent / ref).read_text())
        lines += [
            f"`{message['title']}`, schema id {message['x-schema-id']}, `{ref.removeprefix('../')}`.",
            "",
            "| field | type | meaning |",
            "|---|---|---|",
        ]
        for field in schema["fields"]:
            default = f" Default `{json.dumps(field['default'])}`." if "default" in field else ""
            meaning = cell(field.get("doc", "")) + default
            lines.append(f"| `{field['name']}` | {cell(avro_type(field['type']))} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File  # only when mkdocs runs the hook

    files.append(File.generated(config, PAGE, content=render(Path(config["docs_dir"]) / "asyncapi.yaml")))
    return files

"""The AsyncAPI 3.0 document of every topic, generated from the topic catalog and the Avro schemas.

`orderstream asyncapi` writes docs/asyncapi.yaml; a test keeps the committed file equal to what
this module generates, and checks the catalog's producers and consumers against what each
service really reads and writes, so the document cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orderstream.common.schemas import CATALOG_FILE, Catalog, schema_dir
from orderstream.common.topics import CATALOG, KeyKind, TopicSpec, dlq_name, topic_configs

AVRO = "application/vnd.apache.avro;version=1.9.0"
KEYS = {
    KeyKind.ACCOUNT: "The account id (UTF-8): every record of one account lands on one partition.",
    KeyKind.SYMBOL: "The symbol (UTF-8), e.g. BTC-USD: every record of one symbol lands on one partition.",
    KeyKind.SCOPE: "`ACCOUNT:<account id>` or `SYMBOL:<symbol>` (UTF-8).",
}
DOCUMENT = Path("docs") / "asyncapi.yaml"
DEAD_LETTER: dict[str, Any] = {
    "name": "DeadLetter",
    "title": "A dead-lettered record",
    "summary": "The original key, value (bytes, as received) and headers, plus the error.",
    "contentType": "application/octet-stream",
    "headers": {
        "type": "object",
        "properties": {
            "x-dlq-error": {"type": "string", "description": "What was wrong."},
            "x-dlq-error-type": {"type": "string", "description": "The error's class."},
            "x-dlq-source-topic": {"type": "string"},
            "x-dlq-source-partition": {"type": "string"},
            "x-dlq-source-offset": {"type": "string"},
            "x-dlq-service": {"type": "string", "description": "The service that dead-lettered it."},
        },
        "required": ["x-dlq-error", "x-dlq-source-topic", "x-dlq-source-partition", "x-dlq-source-offset"],
    },
    "payload": {"type": "string", "format": "binary", "description": "The original value, unchanged."},
}


def _message_id(record: Any) -> str:
    return str(record.__name__)


def _channel_id(name: str) -> str:
    return name.replace(".", "_")


def document() -> dict[str, Any]:
    ids = Catalog.load(schema_dir() / CATALOG_FILE)
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for t in CATALOG:
        cid = _channel_id(t.name)
        for rec in t.records:
            namespace, _, name = rec.avro_name.rpartition(".")
            latest = ids.latest(rec.avro_name)
            messages[_message_id(rec)] = {
                "name": name,
                "title": rec.avro_name,
                "summary": (rec.__doc__ or "").strip().splitlines()[0] if rec.__doc__ else name,
                "contentType": "application/vnd.confluent.avro",
                "payload": {
                    "schemaFormat": AVRO,
                    "schema": {"$ref": f"../schemas/{namespace.split('.')[-1]}/{name}.avsc"},
                },
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": KEYS[t.key]},
                        "schemaIdLocation": "payload",
                        "schemaIdPayloadEncoding": "confluent",
                        "bindingVersion": "0.5.0",
                    }
                },
                "x-schema-id": latest.id if latest else None,
            }
        channels[cid] = _channel(t)
        for service in t.producers:
            operations[f"{service}_sends_{cid}"] = _operation("send", cid, t, service)
        for service in t.consumers:
            operations[f"{service}_receives_{cid}"] = _operation("receive", cid, t, service)
        dlq = _channel_id(dlq_name(t.name))
        channels[dlq] = {
            "address": dlq_name(t.name),
            "title": dlq_name(t.name),
            "description": f"Records of {t.name} that could not be decoded or handled, unchanged, with the "
            "error in x-dlq-* headers. `orderstream dlq-replay` sends them back once.",
            "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
            "bindings": {
                "kafka": {
                    "topic": dlq_name(t.name),
                    "topicConfiguration": {"cleanup.policy": ["delete"]},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        for service in t.consumers:
            operations[f"{service}_dead_letters_{cid}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{dlq}"},
                "summary": f"{service} dead-letters a record of {t.name}",
                "tags": [{"name": service}],
                "messages": [{"$ref": f"#/channels/{dlq}/messages/DeadLetter"}],
            }
        operations[f"operator_replays_{dlq}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{dlq}"},
            "summary": f"orderstream dlq-replay reads {dlq_name(t.name)}",
            "tags": [{"name": "operator"}],
            "messages": [{"$ref": f"#/channels/{dlq}/messages/DeadLetter"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Orderstream topics",
            "version": "1",
            "description": (
                "Every Kafka topic of Orderstream: its key, its Avro records (Confluent wire format: "
                "magic byte 0, a 4-byte schema id, then the Avro body), who writes it and who reads it. "
                "Each topic has a dead-letter topic `<topic>.dlq` with the original key, value and "
                "headers plus x-dlq-* headers naming the error. Topic names take the deployment's "
                "ORDERSTREAM_TOPIC_PREFIX. Generated from the topic catalog (services/orderstream/"
                "common/topics.py) by `orderstream asyncapi`; a test keeps it equal to the code."
            ),
        },
        "defaultContentType": "application/vnd.confluent.avro",
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": "The broker `make up` starts without Docker.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": {**messages, "DeadLetter": DEAD_LETTER}},
    }


def _channel(t: TopicSpec) -> dict[str, Any]:
    configs = topic_configs(t)
    return {
        "address": t.name,
        "title": t.name,
        "description": f"Key: {KEYS[t.key]} Written by {', '.join(t.producers)}; read by "
        f"{', '.join(t.consumers)}. Dead letters: {dlq_name(t.name)}.",
        "messages": {
            _message_id(rec): {"$ref": f"#/components/messages/{_message_id(rec)}"} for rec in t.records
        },
        "bindings": {
            "kafka": {
                "topic": t.name,
                "topicConfiguration": {
                    "cleanup.policy": [configs.get("cleanup.policy", "delete")],
                    **({"retention.ms": int(configs["retention.ms"])} if "retention.ms" in configs else {}),
                },
                "bindingVersion": "0.5.0",
            }
        },
    }


def _operation(action: str, cid: str, t: TopicSpec, service: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{cid}"},
        "summary": f"{service} {'writes' if action == 'send' else 'reads'} {t.name}",
        "tags": [{"name": service}],
        "messages": [{"$ref": f"#/channels/{cid}/messages/{_message_id(rec)}"} for rec in t.records],
    }


def render() -> str:
    header = "# Generated by `orderstream asyncapi` from the topic catalog; do not edit by hand.\n"
    return header + yaml.safe_dump(document(), sort_keys=False, width=100, allow_unicode=True)

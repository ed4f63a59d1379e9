"""Write the committed contract documents in ``schemas/generated/`` from the models.

    python -m schemas.generate            # (re)write every file
    python -m schemas.generate --check    # exit 1 and list the files that drifted

Produces one JSON Schema (draft 2020-12) per CloudEvents type in ``schemas.topics.ALL_TOPICS``
(``flowline.step.completed.v1.json``...), ``process-graph.json`` for the graph the API takes, and
``asyncapi.yaml`` (AsyncAPI 3.0) describing every topic. Output is deterministic — sorted keys,
2-space indent, a trailing newline — so the drift check is a plain text comparison.

Schemas come from pydantic's *validation* mode: they state what Flowline's consumers accept,
which is what a producer must send. For these models validation and serialization schemas are
identical (``tests/contract`` asserts it), so what Flowline emits conforms too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from schemas.envelope import DATA_CONTENT_TYPE, SPEC_VERSION, STRUCTURED_CONTENT_TYPE
from schemas.graph import ProcessGraph
from schemas.topics import ALL_TOPICS, DEFINITION_V1, SOURCE, TopicSpec

GENERATED_DIR = Path(__file__).parent / "generated"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# A URN, not a URL: the schemas are files in this repository, not served from a host.
ID_PREFIX = "urn:flowline:schema:"
GRAPH_FILE = "process-graph.json"
ASYNCAPI_FILE = "asyncapi.yaml"
DEFAULT_PREFIX = "flowline."
# Mirrors services.common.settings.Settings.partitions, which `schemas` may not import;
# a contract test keeps the two equal.
DEFAULT_PARTITIONS = 12
API_VERSION = "1.0.0"  # the wire contract: every CloudEvents type is still at .v1
KAFKA_BINDING_VERSION = "0.5.0"
PAYLOAD_FORMAT = "application/schema+json;version=draft-2020-12"

# What each topic carries and who reads it (DESIGN.md §2 and §5); writers come from TopicSpec.
CONTENT = {
    "definitions": "Approved process versions, each written complete; compacted.",
    "instance-requests": "Start, cancel, hold and resume requests for instances.",
    "step-completions": "A step was completed: outcome, measurements, operator or equipment.",
    "step-commands": "Enter a step: step, type, visit, visit table, role, assignment policy, "
    "due time, reason.",
    "instance-events": "Started, step entered/completed, escalated, held, resumed, completed "
    "(terminal status), cancelled, rejected.",
    "task-events": "Task created, claimed, released, completed, SLA breached, escalated.",
    "dead-letters": "Records a consumer could not apply: the original record, its headers and "
    "the rejection reason.",
}
KEYS = {
    "definitions": "`tenant/process_key/version`, e.g. `default/reman/3`: compaction keeps the "
    "latest record of each version.",
    "dead-letters": "The rejected record's original key (empty when it had none).",
}
INSTANCE_KEY = (
    "The instance id, equal to `instance_id` in the data: all records of one instance land on "
    "one partition, in order."
)
READERS = {
    "definitions": ("router",),
    "instance-requests": ("router",),
    "step-completions": ("router",),
    "step-commands": ("tasks",),
    "instance-events": ("tasks", "integrators"),
    "task-events": ("integrators",),
    "dead-letters": ("operators",),
}


def message_types() -> Iterator[tuple[str, type[BaseModel], TopicSpec]]:
    """Every (CloudEvents type, data model, topic) in the topic table, in table order."""
    for topic in ALL_TOPICS:
        for ce_type, model in topic.types.items():
            yield ce_type, model, topic


def schema_file(ce_type: str) -> str:
    """The generated JSON Schema file for a CloudEvents type."""
    return f"{ce_type}.json"


def json_schema(model: type[BaseModel], name: str, title: str, description: str) -> dict[str, Any]:
    """The model's JSON Schema as a standalone draft 2020-12 document."""
    schema = model.model_json_schema(mode="validation")
    schema.update({
        "$schema": DIALECT,
        "$id": f"{ID_PREFIX}{name}",
        "$comment": f"Generated from {model.__module__}.{model.__qualname__} by "
        "`python -m schemas.generate`; do not edit.",
        "title": title,
        "description": description,
    })
    return schema


def message_schema(ce_type: str, model: type[BaseModel], topic: TopicSpec) -> dict[str, Any]:
    doc = model.__doc__ or ""
    description = (
        f"The data of a `{ce_type}` CloudEvent ({model.__name__}) on "
        f"`{topic.name(DEFAULT_PREFIX)}`, keyed by {topic.key}. {_first_paragraph(doc)}"
    )
    return json_schema(model, ce_type, ce_type, description.strip())


def graph_schema() -> dict[str, Any]:
    description = (
        "A process graph as designed: the body of `POST /v1/processes`. Unknown fields are "
        "kept. An approved version adds `version` and `status`: see "
        f"`{schema_file(DEFINITION_V1)}`."
    )
    return json_schema(ProcessGraph, GRAPH_FILE.removesuffix(".json"), "ProcessGraph",
                       description)


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())


# --- AsyncAPI -----------------------------------------------------------------------------------


def headers_schema() -> dict[str, Any]:
    """The CloudEvents binary-mode headers every Flowline record carries."""
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary mode. A structured-mode "
        f"record instead has `content-type: {STRUCTURED_CONTENT_TYPE}` and the whole event "
        "(attributes and `data`) as its JSON value; consumers accept both.",
        "required": ["ce_id", "ce_source", "ce_specversion", "ce_type", "ce_time",
                     "content-type"],
        "properties": {
            "ce_id": {
                "type": "string", "minLength": 1,
                "description": "Event id and the idempotency key: a consumer applies each id "
                "once, so re-sending a record with the same ce_id is a no-op.",
            },
            "ce_source": {
                "type": "string", "minLength": 1,
                "description": f"URI-reference of the producer; Flowline writes `{SOURCE}/"
                "<service>`.",
            },
            "ce_specversion": {"type": "string", "const": SPEC_VERSION},
            "ce_type": {
                "type": "string",
                "description": "The event and its schema version; selects the payload schema.",
            },
            "ce_time": {
                "type": "string", "format": "date-time",
                "description": "RFC 3339 time of the event; the router decides with it as "
                "`now` (due times, journey timestamps).",
            },
            "ce_subject": {
                "type": "string",
                "description": "Optional; Flowline writes the instance id (the record key).",
            },
            "content-type": {
                "type": "string", "const": DATA_CONTENT_TYPE,
                "description": "Content type of the value (the event data, JSON).",
            },
        },
    }


def _channel(topic: TopicSpec) -> dict[str, Any]:
    binding: dict[str, Any] = {
        "topic": topic.name(DEFAULT_PREFIX),
        "partitions": DEFAULT_PARTITIONS,
        "bindingVersion": KAFKA_BINDING_VERSION,
    }
    if topic.config:
        binding["topicConfiguration"] = {
            k: v.split(",") if k == "cleanup.policy" else v for k, v in topic.config.items()
        }
    return {
        "address": topic.name(DEFAULT_PREFIX),
        "title": topic.suffix,
        "description": f"{CONTENT[topic.suffix]} Key: {topic.key}. Written by {topic.writers}. "
        f"The `{DEFAULT_PREFIX}` prefix is configurable (FLOWLINE_TOPIC_PREFIX)."
        + (" Instance-keyed topics share one partition count (FLOWLINE_PARTITIONS), so they "
           "are co-partitioned." if topic.instance_keyed else ""),
        "messages": {t: {"$ref": f"#/components/messages/{t}"} for t in topic.types},
        "bindings": {"kafka": binding},
    }


def _message(ce_type: str, model: type[BaseModel], topic: TopicSpec) -> dict[str, Any]:
    return {
        "name": ce_type,
        "title": model.__name__,
        "summary": _first_paragraph(model.__doc__ or model.__name__),
        "contentType": DATA_CONTENT_TYPE,
        "headers": {"allOf": [
            {"$ref": "#/components/schemas/CloudEventHeaders"},
            {"properties": {"ce_type": {"const": ce_type}}},
        ]},
        "payload": {"schemaFormat": PAYLOAD_FORMAT,
                    "schema": {"$ref": f"./{schema_file(ce_type)}"}},
        "bindings": {"kafka": {
            "key": {"type": "string", "description": _key_description(topic)},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }},
    }


def _key_description(topic: TopicSpec) -> str:
    return INSTANCE_KEY if topic.instance_keyed else KEYS[topic.suffix]


def _slug(role: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", role.lower()).strip("-")


def _operations(topic: TopicSpec) -> dict[str, Any]:
    writers = tuple(w.strip() for w in topic.writers.split(","))
    ops: dict[str, Any] = {}
    for action, roles in (("send", writers), ("receive", READERS[topic.suffix])):
        for role in roles:
            verb = "sends to" if action == "send" else "receives from"
            ops[f"{topic.suffix}.{action}.{_slug(role)}"] = {
                "action": action,
                "title": f"{role} {verb} {topic.name(DEFAULT_PREFIX)}",
                "channel": {"$ref": f"#/channels/{topic.suffix}"},
                "messages": [{"$ref": f"#/channels/{topic.suffix}/messages/{t}"}
                             for t in topic.types],
            }
    return ops


def asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document for every topic in ALL_TOPICS."""
    operations: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        operations.update(_operations(topic))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Flowline Kafka contract",
            "version": API_VERSION,
            "description": "Topics, keys and CloudEvents types of Flowline. Every record is a "
            "CloudEvents 1.0 event, emitted in Kafka binary mode (ce_* headers, JSON data) and "
            "accepted in binary or structured mode. Generated by `python -m schemas.generate`.",
        },
        "defaultContentType": DATA_CONTENT_TYPE,
        "channels": {topic.suffix: _channel(topic) for topic in ALL_TOPICS},
        "operations": operations,
        "components": {
            "schemas": {"CloudEventHeaders": headers_schema()},
            "messages": {t: _message(t, m, topic) for t, m, topic in message_types()},
        },
    }


# --- rendering ----------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$-]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


def _yaml_key(key: str) -> str:
    plain = _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS
    return key if plain else json.dumps(key)


def _yaml_lines(value: Any, indent: int) -> Iterator[str]:
    pad = " " * indent
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            if isinstance(item, dict | list) and item:
                yield f"{pad}{_yaml_key(key)}:"
                yield from _yaml_lines(item, indent + 2)
            else:
                yield f"{pad}{_yaml_key(key)}: {_yaml_inline(item)}"
    else:
        for item in value:
            if isinstance(item, dict | list) and item:
                first, *rest = _yaml_lines(item, indent + 2)
                yield f"{pad}- {first.lstrip()}"
                yield from rest
            else:
                yield f"{pad}- {_yaml_inline(item)}"


def _yaml_inline(value: Any) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return _yaml_scalar(value)


def to_yaml(document: dict[str, Any]) -> str:
    """A minimal, deterministic YAML emitter (block style, sorted keys, quoted strings)."""
    return "\n".join(_yaml_lines(document, 0)) + "\n"


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render() -> dict[str, str]:
    """Every generated file: name -> exact text."""
    files = {schema_file(t): to_json(message_schema(t, m, topic))
             for t, m, topic in message_types()}
    files[GRAPH_FILE] = to_json(graph_schema())
    files[ASYNCAPI_FILE] = to_yaml(asyncapi())
    return files


def drift(directory: Path = GENERATED_DIR) -> list[str]:
    """Files that are missing, differ from `render()`, or are no longer generated."""
    files = render()
    changed = [name for name, text in sorted(files.items())
               if not (directory / name).is_file()
               or (directory / name).read_text(encoding="utf-8") != text]
    stale = [p.name for p in _owned(directory) if p.name not in files]
    return changed + sorted(stale)


def write(directory: Path = GENERATED_DIR) -> list[str]:
    """Write every file and delete generated files that no longer have a source; returns names."""
    directory.mkdir(parents=True, exist_ok=True)
    files = render()
    for path in _owned(directory):
        if path.name not in files:
            path.unlink()
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return sorted(files)


def _owned(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".json", ".yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if any generated file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        drifted = drift()
        for name in drifted:
            print(f"drifted: schemas/generated/{name}", file=sys.stderr)
        if drifted:
            print("run `python -m schemas.generate` and commit the result", file=sys.stderr)
        return 1 if drifted else 0
    for name in write():
        print(f"wrote schemas/generated/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

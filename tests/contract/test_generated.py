"""The committed documents in schemas/generated/ are exactly what the models produce now."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from schemas import generate
from schemas.graph import ProcessGraph
from schemas.topics import ALL_TOPICS
from services.common.settings import Settings
from tests.contract import minischema
from tests.contract.samples import DESIGN_GRAPH, SAMPLES

TYPES = {t: model for topic in ALL_TOPICS for t, model in topic.types.items()}
HEADERS = {"ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion", "content-type",
           "ce_subject"}


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((generate.GENERATED_DIR / name).read_text(encoding="utf-8")))


def test_generated_files_match_the_models() -> None:
    drifted = generate.drift()
    assert not drifted, (
        f"schemas/generated/ is out of date ({', '.join(drifted)}): the wire models changed. "
        "Run `python -m schemas.generate`, review the diff (is it a compatible change?), "
        "document it in docs/integrators.md and commit the result."
    )


def test_every_cloudevents_type_has_a_schema_file() -> None:
    missing = [t for t in TYPES if not (generate.GENERATED_DIR / f"{t}.json").is_file()]
    assert not missing, f"no JSON Schema for {missing}: run `python -m schemas.generate`"
    assert (generate.GENERATED_DIR / generate.GRAPH_FILE).is_file()


@pytest.mark.parametrize("ce_type", sorted(TYPES))
def test_schema_file_is_a_described_2020_12_document(ce_type: str) -> None:
    schema = load(f"{ce_type}.json")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:flowline:schema:{ce_type}"
    assert schema["title"] == ce_type
    assert ce_type in schema["description"]


@pytest.mark.parametrize("model", sorted({*TYPES.values(), ProcessGraph}, key=str))
def test_validation_and_serialization_schemas_agree(model: type[BaseModel]) -> None:
    # generate.py uses validation mode; that is only the whole truth while the two agree.
    assert model.model_json_schema(mode="validation") == model.model_json_schema(
        mode="serialization"
    )


@pytest.mark.parametrize("ce_type", sorted(TYPES))
def test_sample_payload_validates_against_its_schema(ce_type: str) -> None:
    schema, sample, model = load(f"{ce_type}.json"), SAMPLES[ce_type], TYPES[ce_type]
    assert minischema.keywords(schema) <= minischema.KNOWN
    assert minischema.errors(schema, sample) == []
    emitted = model.model_validate(sample).dump()  # what a Flowline producer writes
    assert minischema.errors(schema, emitted) == []
    assert model.model_validate(emitted) == model.model_validate(sample)


@pytest.mark.parametrize("ce_type", sorted(TYPES))
def test_schema_required_fields_are_the_models(ce_type: str) -> None:
    model = TYPES[ce_type]
    required = [f.alias or name for name, f in model.model_fields.items() if f.is_required()]
    assert load(f"{ce_type}.json").get("required", []) == required
    schema = load(f"{ce_type}.json")
    for field in required:  # and a payload without one of them fails its schema
        partial = {k: v for k, v in SAMPLES[ce_type].items() if k != field}
        assert minischema.errors(schema, partial), f"{ce_type} accepted a payload without {field}"


def test_schemas_reject_wrong_types_and_bounds() -> None:
    completion = load("flowline.step.completed.v1.json")
    assert minischema.errors(completion, {"instance_id": "i-1", "step": ""})
    assert minischema.errors(completion, {"instance_id": "i-1", "step": "s", "visit": 0})
    assert minischema.errors(completion, {"instance_id": 7, "step": "s"})
    start = load("flowline.instance.start.v1.json")
    bad_priority = {**SAMPLES["flowline.instance.start.v1"], "priority": "asap"}
    assert minischema.errors(start, bad_priority)


def test_process_graph_schema_accepts_the_design_example() -> None:
    schema = load(generate.GRAPH_FILE)
    assert schema["title"] == "ProcessGraph" and schema["$id"].endswith("process-graph")
    assert minischema.errors(schema, DESIGN_GRAPH) == []
    assert minischema.errors(schema, {**DESIGN_GRAPH, "key": "no spaces allowed"})


def test_asyncapi_describes_every_topic_and_type() -> None:
    doc = generate.asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.name() for t in ALL_TOPICS}
    assert set(doc["components"]["messages"]) == set(TYPES)
    for topic in ALL_TOPICS:
        channel = doc["channels"][topic.suffix]
        assert set(channel["messages"]) == set(topic.types)
        assert channel["bindings"]["kafka"]["partitions"] == Settings.model_fields[
            "partitions"
        ].default, "generate.DEFAULT_PARTITIONS must follow Settings.partitions"
        ops = {name: op for name, op in doc["operations"].items()
               if op["channel"]["$ref"] == f"#/channels/{topic.suffix}"}
        writers = [w.strip().replace(" ", "-") for w in topic.writers.split(",")]
        assert {n for n, op in ops.items() if op["action"] == "send"} == {
            f"{topic.suffix}.send.{w}" for w in writers
        }
        assert any(op["action"] == "receive" for op in ops.values()), topic.name()


def test_asyncapi_messages_carry_payload_key_and_cloudevents_headers() -> None:
    doc = generate.asyncapi()
    headers = doc["components"]["schemas"]["CloudEventHeaders"]
    assert set(headers["properties"]) == HEADERS
    assert "ce_subject" not in headers["required"]
    assert "idempotency" in headers["properties"]["ce_id"]["description"]
    for ce_type, message in doc["components"]["messages"].items():
        ref = message["payload"]["schema"]["$ref"]
        assert (generate.GENERATED_DIR / ref.removeprefix("./")).is_file()
        assert message["headers"]["allOf"][1]["properties"]["ce_type"]["const"] == ce_type
        assert message["bindings"]["kafka"]["key"]["type"] == "string"


def test_asyncapi_internal_refs_resolve() -> None:
    doc = generate.asyncapi()

    def refs(node: Any) -> list[str]:
        found: list[str] = []
        if isinstance(node, dict):
            found += [node["$ref"]] if "$ref" in node else []
            node = list(node.values())
        if isinstance(node, list):
            for item in node:
                found += refs(item)
        return found

    internal = [r for r in refs(doc) if r.startswith("#/")]
    assert len(internal) > len(TYPES)
    for ref in internal:
        target: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"dangling $ref {ref}"
            target = target[part]


def test_yaml_emitter_quotes_what_yaml_would_misread() -> None:
    text = generate.to_yaml({"on": "yes", "a b": ["1.0", None, True, 3, {}],
                             "x": {"k": 'say "hi"\nbye'}})
    assert text == (
        '"a b":\n  - "1.0"\n  - null\n  - true\n  - 3\n  - {}\n"on": "yes"\n'
        'x:\n  k: "say \\"hi\\"\\nbye"\n'
    )

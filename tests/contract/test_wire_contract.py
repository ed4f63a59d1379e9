"""The public Kafka contract of DESIGN.md §5, spelled out literally so it cannot drift silently.

If one of these fails, you are changing what MES equipment and integrators program against:
add (a new topic, a new `.v2` type, an optional field) instead of changing, or document the
break in docs/integrators.md and update the literal here on purpose.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from schemas import topics
from schemas.envelope import STRUCTURED_CONTENT_TYPE
from schemas.graph import ProcessGraph, ProcessVersion, definition_key
from schemas.messages import (
    ControlInstance,
    DeadLetter,
    InstanceEvent,
    StartInstance,
    StepCommand,
    StepCompletion,
    Subject,
    TaskEvent,
)
from services.common.envelopes import MalformedRecord, decode, encode
from services.common.settings import Settings
from tests.contract.samples import DESIGN_GRAPH

TOPICS = {
    "flowline.definitions": ("tenant/process_key/version", "definitions"),
    "flowline.instance-requests": ("instance id", "gateway, integrators, tasks, router"),
    "flowline.step-completions": ("instance id", "equipment, gateway, tasks, router"),
    "flowline.step-commands": ("instance id", "router"),
    "flowline.instance-events": ("instance id", "router"),
    "flowline.task-events": ("instance id", "tasks"),
    "flowline.dead-letters": ("original key", "every consumer"),
}
TYPES: dict[str, dict[str, type[BaseModel]]] = {
    "flowline.definitions": {"flowline.process.version.v1": ProcessVersion},
    "flowline.instance-requests": {
        "flowline.instance.start.v1": StartInstance,
        "flowline.instance.cancel.v1": ControlInstance,
        "flowline.instance.hold.v1": ControlInstance,
        "flowline.instance.resume.v1": ControlInstance,
        "flowline.instance.migrate.v1": ControlInstance,  # session 2: instance migration
    },
    "flowline.step-completions": {"flowline.step.completed.v1": StepCompletion},
    "flowline.step-commands": {"flowline.step.command.v1": StepCommand},
    "flowline.instance-events": {
        f"flowline.instance.{kind}.v1": InstanceEvent for kind in (
            "started", "step_entered", "step_completed", "escalated", "held", "resumed",
            "completed", "cancelled", "rejected", "migrated",
        )
    },
    "flowline.task-events": {"flowline.task.event.v1": TaskEvent},
    "flowline.dead-letters": {"flowline.dead_letter.v1": DeadLetter},
}
BY_NAME = {t.name(): t for t in topics.ALL_TOPICS}


def required(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items() if f.is_required()}


# --- topics ---------------------------------------------------------------------------------


def test_topic_names_with_the_default_prefix() -> None:
    assert set(BY_NAME) == set(TOPICS)
    settings = Settings()
    assert settings.topic_prefix == "flowline."
    assert {settings.definitions_topic, settings.requests_topic, settings.completions_topic,
            settings.commands_topic, settings.instance_events_topic,
            settings.task_events_topic, settings.dead_letters_topic} == set(TOPICS)


def test_the_prefix_is_configurable() -> None:
    assert topics.STEP_COMPLETIONS.name("acme.") == "acme.step-completions"
    assert Settings(topic_prefix="acme.").completions_topic == "acme.step-completions"


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_keys_and_writers(name: str) -> None:
    assert (BY_NAME[name].key, BY_NAME[name].writers) == TOPICS[name]


def test_instance_keyed_topics_are_co_partitioned() -> None:
    keyed = {t.name() for t in topics.ALL_TOPICS if t.instance_keyed}
    assert keyed == {n for n, (key, _) in TOPICS.items() if key == "instance id"}
    from services.common.kafka import topic_table

    counts = {name: parts for name, parts, _ in topic_table(Settings(partitions=7))}
    assert {counts[name] for name in keyed} == {7}


def test_definitions_is_compacted_and_nothing_else_is() -> None:
    assert topics.DEFINITIONS.config == {"cleanup.policy": "compact"}
    others = [t for t in topics.ALL_TOPICS if t is not topics.DEFINITIONS]
    assert all("compact" not in t.config.get("cleanup.policy", "") for t in others)


def test_definitions_key_is_tenant_process_version() -> None:
    version = ProcessVersion.model_validate({**DESIGN_GRAPH, "tenant": "acme", "version": 3})
    assert version.topic_key == definition_key("acme", "reman", 3) == "acme/reman/3"


# --- CloudEvents types ----------------------------------------------------------------------


def test_cloudevents_types_are_the_literal_set() -> None:
    assert {t.name(): dict(t.types) for t in topics.ALL_TOPICS} == TYPES
    assert topics.COMPLETED_V1 == "flowline.step.completed.v1"
    assert topics.START_V1 == "flowline.instance.start.v1"
    assert topics.instance_event_type("step_entered") == "flowline.instance.step_entered.v1"
    assert topics.SOURCE == "flowline"


def test_every_type_names_its_schema_version() -> None:
    for types in TYPES.values():
        assert all(t.startswith("flowline.") and t.rsplit(".", 1)[1] == "v1" for t in types)


# --- inbound message shapes -----------------------------------------------------------------


def test_required_fields_of_what_producers_send() -> None:
    assert required(StepCompletion) == {"instance_id", "step"}
    assert required(StartInstance) == {"instance_id", "process", "subject"}
    assert required(Subject) == {"type", "id"}
    assert required(ControlInstance) == {"instance_id", "action"}


def test_minimal_completion_and_unknown_fields_are_kept() -> None:
    completion = StepCompletion.model_validate(
        {"instance_id": "i-1", "step": "inspect", "x_station": "cell-4"}
    )
    assert completion.dump() == {"instance_id": "i-1", "step": "inspect", "measurements": {},
                                 "x_station": "cell-4"}


# --- envelopes ------------------------------------------------------------------------------

AT = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
DATA = {"instance_id": "i-1", "step": "inspect", "outcome": "pass"}


def binary() -> tuple[dict[str, bytes], bytes]:
    headers, value = encode(topics.COMPLETED_V1, DATA, service="gateway", event_id="e-1",
                            subject="i-1", time=AT)
    return dict(headers), value


def test_encode_writes_binary_mode() -> None:
    headers, value = binary()
    assert headers["ce_id"] == b"e-1"
    assert headers["ce_type"] == b"flowline.step.completed.v1"
    assert headers["ce_source"] == b"flowline/gateway"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_subject"] == b"i-1"
    assert headers["content-type"] == b"application/json"
    assert datetime.fromisoformat(headers["ce_time"].decode()) == AT
    assert json.loads(value) == DATA  # the value is the data itself, not an envelope


def test_encode_makes_an_id_when_none_is_given() -> None:
    first, _ = encode(topics.COMPLETED_V1, DATA, service="tasks")
    second, _ = encode(topics.COMPLETED_V1, DATA, service="tasks")
    assert dict(first)["ce_id"] and dict(first)["ce_id"] != dict(second)["ce_id"]
    assert "ce_time" in dict(first)


@pytest.mark.parametrize("as_list", [True, False])
def test_decode_accepts_binary_mode(as_list: bool) -> None:
    headers, value = binary()
    event = decode(list(headers.items()) if as_list else headers, b"i-1", value)
    assert (event.id, event.type, event.source, event.subject, event.time, event.data) == (
        "e-1", topics.COMPLETED_V1, "flowline/gateway", "i-1", AT, DATA
    )


def structured(**attributes: Any) -> bytes:
    event = {"specversion": "1.0", "id": "mes-77", "source": "mes/cell-4",
             "type": topics.COMPLETED_V1, "time": "2025-03-01T08:00:00Z",
             "datacontenttype": "application/json", "data": DATA, **attributes}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def test_decode_accepts_structured_mode() -> None:
    event = decode([("content-type", STRUCTURED_CONTENT_TYPE.encode())], b"i-1", structured())
    assert (event.id, event.type, event.source, event.time, event.data) == (
        "mes-77", topics.COMPLETED_V1, "mes/cell-4", AT, DATA
    )
    assert STRUCTURED_CONTENT_TYPE == "application/cloudevents+json"


# Known bugs, kept visible: the cloudevents 2.x SDK fills a missing `id` with a fresh UUID4 and
# a missing `time` with now() before `decode` sees the event, so its fallbacks never run.


def test_decode_without_time_takes_the_record_time() -> None:
    # decode()'s docstring promises this, so a replay decides the same way.
    headers, value = binary()
    del headers["ce_time"]
    assert decode(headers, b"i-1", value, record_time=AT).time == AT


def test_decode_rejects_an_event_without_an_id() -> None:
    # ce_id is the idempotency key: an id-less record gets a new random id on every redelivery.
    headers, value = binary()
    del headers["ce_id"]
    with pytest.raises(MalformedRecord):
        decode(headers, b"i-1", value)


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        ({}, b"garbage"),
        ({}, None),
        ({"content-type": STRUCTURED_CONTENT_TYPE.encode()}, b"{not json"),
        ({"content-type": STRUCTURED_CONTENT_TYPE.encode()}, structured(type=None)),
        ({"content-type": STRUCTURED_CONTENT_TYPE.encode()}, structured(data=[1, 2])),
        ({**binary()[0], "ce_source": b""}, binary()[1]),
        (binary()[0], b"[1, 2]"),
        (binary()[0], b"not json"),
    ],
    ids=["garbage", "no-value", "bad-json", "no-type", "list-data", "no-source",
         "list-value", "text-value"],
)
def test_decode_rejects_what_is_not_a_cloudevent_with_object_data(
    headers: dict[str, bytes], value: bytes | None
) -> None:
    with pytest.raises(MalformedRecord):
        decode(headers, b"i-1", value)


# --- the graph ------------------------------------------------------------------------------


def assert_kept(sent: Any, got: Any, path: str = "$") -> None:
    """Everything `sent` says is in `got` unchanged (`got` may add defaults)."""
    if isinstance(sent, dict):
        for key, value in sent.items():
            assert key in got, f"{path}.{key} was dropped"
            assert_kept(value, got[key], f"{path}.{key}")
    elif isinstance(sent, list):
        assert len(sent) == len(got), f"{path} changed length"
        for i, (a, b) in enumerate(zip(sent, got, strict=True)):
            assert_kept(a, b, f"{path}[{i}]")
    else:
        assert sent == got, f"{path}: {sent!r} became {got!r}"


def test_design_graph_parses_and_round_trips() -> None:
    graph = ProcessGraph.model_validate(DESIGN_GRAPH)
    assert graph.key == "reman" and len(graph.steps) == 8
    assert graph.edges[0].type == "default"  # an edge's type defaults to `default`
    dumped = graph.dump()
    assert_kept(DESIGN_GRAPH, dumped)
    assert dumped["x_designer"] == {"zoom": 1.5}  # extra="allow": unknown fields survive
    assert dumped["steps"][1]["x_lane"] == "quality"
    assert dumped["edges"][0]["from"] == "start"  # `from` on the wire, not `from_`
    assert ProcessGraph.model_validate(dumped) == graph
    assert ProcessGraph.model_validate(json.loads(json.dumps(dumped))).dump() == dumped


def test_process_version_round_trips_as_written_on_definitions() -> None:
    sent = {**DESIGN_GRAPH, "tenant": "acme", "version": 2, "status": "approved",
            "copied_from": "reman-old/4"}
    version = ProcessVersion.model_validate(sent)
    assert_kept(sent, version.dump())
    assert ProcessVersion.model_validate(version.dump()) == version

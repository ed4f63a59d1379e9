"""The records every scenario sends, and what the router emits for them (sizes, counts).

One process (the shipped remanufacturing template) and one happy path through it. Records are
encoded once, up front, with the same CloudEvents codec the services use, so producing them in a
scenario costs only the client's send and the raw loop sees byte-identical inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.graph import ProcessVersion
from schemas.messages import StartInstance, StepCompletion
from schemas.topics import COMPLETED_V1, DEFINITION_V1, START_V1
from services.common.envelopes import encode
from services.definitions.templates import load_template
from services.router.routing import Graph, InstanceState, decide

PROCESS = "remanufacturing"
SERVICE = "bench"
# The happy path after the start: each completion makes the router enter the next step and send
# exactly one step command (the last, final_qa pass, enters `ship`).
PATH: tuple[tuple[str, str | None], ...] = (
    ("receive", None), ("disassemble", None), ("clean", None),
    ("inspect", "pass"), ("reassemble", None), ("final_qa", "pass"),
)

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes
    headers: Headers

    @property
    def size(self) -> int:
        return len(self.key) + len(self.value) + sum(len(k) + len(v) for k, v in self.headers)


def process_version(graph: dict[str, Any] | None = None) -> ProcessVersion:
    data = graph or load_template(PROCESS)
    return ProcessVersion.model_validate({**data, "version": 1, "status": "approved"})


def definition_record(version: ProcessVersion) -> Record:
    """The `flowline.definitions` record an approval publishes, written complete."""
    headers, value = encode(DEFINITION_V1, version.dump(), service=SERVICE,
                            event_id=version.topic_key, subject=version.topic_key)
    return Record(version.topic_key.encode(), value, headers)


def instance_id(run: str, n: int) -> str:
    return f"{run}-{n:07d}"


def start_record(iid: str) -> Record:
    data = StartInstance(instance_id=iid, process=PROCESS,
                         subject={"type": "part", "id": iid}).dump()  # type: ignore[arg-type]
    headers, value = encode(START_V1, data, service=SERVICE, subject=iid)
    return Record(iid.encode(), value, headers)


def completion_record(iid: str, step: str, outcome: str | None, visit: int = 1) -> Record:
    data = StepCompletion(instance_id=iid, step=step, outcome=outcome, visit=visit,
                          operator="bench").dump()
    headers, value = encode(COMPLETED_V1, data, service=SERVICE, subject=iid)
    return Record(iid.encode(), value, headers)


def starts(run: str, count: int) -> list[Record]:
    return [start_record(instance_id(run, n)) for n in range(count)]


def completions(run: str, count: int, rounds: int = len(PATH)) -> list[Record]:
    """Round-major: every instance's first step, then every instance's second, ..."""
    return [completion_record(instance_id(run, n), step, outcome)
            for step, outcome in PATH[:rounds] for n in range(count)]


@dataclass(frozen=True)
class OutputShape:
    """What the router writes per routed completion (value bytes), measured with the core."""

    command_bytes: int
    events_per_input: int
    event_bytes: int
    state_bytes: int
    completion_bytes: int


def router_output_shape(version: ProcessVersion | None = None) -> OutputShape:
    """Walk one instance down PATH through `decide` and average what comes out."""
    version = version or process_version()
    graph = Graph.of(version)
    now = datetime.now(UTC)
    iid = instance_id("shape", 0)
    start = StartInstance.model_validate(json.loads(start_record(iid).value))
    state: InstanceState | None = decide(graph, None, start, "e0", now).state
    commands, events, states, inputs = [], [], [], []
    for n, (step, outcome) in enumerate(PATH):
        rec = completion_record(iid, step, outcome)
        msg = StepCompletion.model_validate(json.loads(rec.value))
        d = decide(graph, state, msg, f"e{n + 1}", now)
        state = d.state
        inputs.append(rec.size)
        commands += [len(json.dumps(c.dump())) for c in d.commands]
        events += [len(json.dumps(e.dump())) for e in d.events]
        states.append(len(json.dumps(state.to_dict())) if state else 0)
    return OutputShape(
        command_bytes=sum(commands) // len(commands),
        events_per_input=round(len(events) / len(PATH)),
        event_bytes=sum(events) // max(1, len(events)),
        state_bytes=sum(states) // len(states),
        completion_bytes=sum(inputs) // len(inputs),
    )

"""The router stores `stored_value(state)` instead of `state.to_dict()`: the same value."""

from __future__ import annotations

from datetime import UTC, datetime

from bench import workload
from schemas.messages import StartInstance, StepCompletion
from services.router.app import stored_value
from services.router.routing import Graph, InstanceState, decide


def test_stored_value_equals_to_dict_and_round_trips_along_a_whole_run() -> None:
    graph = Graph.of(workload.process_version())
    now = datetime(2026, 1, 2, tzinfo=UTC)
    start = StartInstance(instance_id="i-1", process=workload.PROCESS,
                          subject={"type": "part", "id": "p"},  # type: ignore[arg-type]
                          context={"nested": {"a": [1, {"b": 2}]}})
    state = decide(graph, None, start, "e0", now).state
    seen = 0
    for n, (step, outcome) in enumerate(workload.PATH):
        assert state is not None
        value = stored_value(state)
        assert value == state.to_dict()
        assert InstanceState.from_dict(value) == state
        seen += 1
        completion = StepCompletion(instance_id="i-1", step=step, outcome=outcome,
                                    operator="op")
        state = decide(graph, state, completion, f"e{n + 1}", now).state
    assert seen == len(workload.PATH)


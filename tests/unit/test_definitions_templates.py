"""Shipped templates: each validates with zero findings and actually runs through the router.

"Runs" means the routing core (the same ``decide`` the router app calls) takes an instance
from start to the expected terminal along each scripted path, including the bounded loops.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from schemas.graph import ProcessGraph, ProcessVersion, StepType
from schemas.messages import StartInstance, StepCompletion, Subject
from services.definitions.templates import list_templates, load_template
from services.definitions.validation import validate
from services.router.routing import Graph, InstanceState, decide

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NEW = ["asset-import", "capa", "document-approval", "it-support", "manufacturing-analysis"]

# template -> [(completions as (step, outcome), the terminal_status it must end with)]
Path = list[tuple[str, str | None]]
RUNS: dict[str, list[tuple[Path, str]]] = {
    "it-support": [
        ([("triage", "Assign"), ("resolution", "Complete"), ("verification", "Verified")],
         "completed"),
        ([("triage", "Escalate"), ("manager_review", "Reject")], "cancelled"),
        # Reopened twice: resolution's 4th entry escalates to the manager.
        ([("triage", None), ("resolution", None), ("verification", "Reopen"),
          ("resolution", None), ("verification", "Reopen"), ("resolution", None),
          ("verification", "Reopen"), ("manager_review", "Resolve")], "completed"),
    ],
    "document-approval": [
        ([("draft", None), ("review", "Approve"), ("approve", "Approve")], "completed"),
        ([("draft", None), ("review", "Reject"), ("draft", None), ("review", "Approve"),
          ("approve", "Reject"), ("draft", None), ("review", "Reject"),
          ("escalated", "Reject")], "cancelled"),
    ],
    "capa": [
        ([("identify", None), ("investigate", None), ("action", None), ("verify", "pass")],
         "completed"),
        ([("identify", None), ("investigate", None), ("action", None),
          ("verify", "Not effective"), ("action", None), ("verify", "fail"),
          ("action", None), ("verify", "fail"), ("management_review", "Cancel")],
         "cancelled"),
    ],
    "asset-import": [
        ([("fetch", None), ("process", None), ("validate", None), ("save", None)],
         "completed"),
        ([("fetch", None), ("process", None), ("validate", "fail")], "failed"),
    ],
}


def test_templates_are_shipped() -> None:
    assert set(NEW) | {"remanufacturing"} <= set(list_templates())


@pytest.mark.parametrize("name", sorted(list_templates()))
def test_every_template_validates_with_zero_findings(name: str) -> None:
    graph = ProcessGraph.model_validate(load_template(name))
    assert graph.key == name
    assert validate(graph) == []


def test_it_support_is_seed_001() -> None:
    g = ProcessGraph.model_validate(load_template("it-support"))
    assert (g.department, g.category, g.sub_category) == ("IT", "Technology",
                                                          "Support Request")
    assert sum(s.weight or 0 for s in g.steps) == pytest.approx(1.0)
    assert all(s.role and s.escalate_to for s in g.steps
               if s.id in ("triage", "resolution", "verification"))
    assert {e.name for e in g.edges if e.name} >= {"Assign", "Complete", "Escalate"}


def test_manufacturing_analysis_is_the_seed_003_dag() -> None:
    g = ProcessGraph.model_validate(load_template("manufacturing-analysis"))
    types = {s.id: s.type for s in g.steps}
    assert types["split"] == StepType.PARALLEL and types["join"] == StepType.JOIN
    handlers = {s.id: (s.action or {}).get("handler") for s in g.steps
                if s.type == StepType.AUTOMATED}
    assert handlers == {"detect_outliers": "detect_outliers", "analyze_trends": "analyze_trends",
                        "synthesize": "synthesize", "verdict": "verdict"}
    branches = {e.to for e in g.edges if e.from_ == "split"}
    assert branches == {"detect_outliers", "analyze_trends"}
    assert {e.from_ for e in g.edges if e.to == "join"} == branches


def run(name: str, path: Path) -> InstanceState:
    version = ProcessVersion.model_validate({**load_template(name), "version": 1})
    graph = Graph.of(version)
    decision = decide(graph, None, StartInstance(instance_id="i", process=name,
                                                 subject=Subject(type="t", id="1")), "e0", T0)
    state = decision.state
    for n, (step, outcome) in enumerate(path, 1):
        assert state is not None and state.status == "running", (step, state)
        assert step in state.active, f"expected to wait at {step}, at {sorted(state.active)}"
        decision = decide(graph, state, StepCompletion(instance_id="i", step=step,
                                                       outcome=outcome),
                          f"e{n}", T0 + timedelta(minutes=n))
        assert decision.rejection is None, decision.rejection
        state = decision.state
    assert state is not None
    return state


@pytest.mark.parametrize(("name", "path", "terminal"),
                         [(n, p, t) for n, runs in RUNS.items() for p, t in runs])
def test_template_runs_through_the_router(name: str, path: Path, terminal: str) -> None:
    state = run(name, path)
    assert (state.status, state.terminal_status) == ("completed", terminal)
    version = ProcessVersion.model_validate({**load_template(name), "version": 1})
    limits = {s.id: s.max_visits for s in version.steps if s.max_visits}
    assert all(state.visits.get(step, 0) <= limit for step, limit in limits.items())


def test_manufacturing_analysis_runs_through_the_router() -> None:
    """The DAG: the split fans out to both analyses and the join waits for both."""
    state = run("manufacturing-analysis", [("detect_outliers", None), ("analyze_trends", None),
                                           ("synthesize", None), ("verdict", "PASS")])
    assert (state.status, state.terminal_status) == ("completed", "completed")

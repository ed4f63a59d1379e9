"""Parallel splits and joins: a split fans out to two or more branches, a join gathers them."""

from __future__ import annotations

from typing import Any

from schemas.graph import ProcessGraph
from services.definitions.validation import validate


def graph(branches: int, into_join: int) -> ProcessGraph:
    """start -> split -> b0..bn -> join -> done, with only ``into_join`` branches joined."""
    steps: list[dict[str, Any]] = [
        {"id": "start", "type": "start"}, {"id": "split", "type": "parallel"},
        {"id": "join", "type": "join"},
        {"id": "done", "type": "terminal", "terminal_status": "completed"}]
    edges = [{"from": "start", "to": "split"}, {"from": "join", "to": "done"}]
    for i in range(branches):
        steps.append({"id": f"b{i}", "type": "automated", "action": {"handler": f"h{i}"}})
        edges.append({"from": "split", "to": f"b{i}"})
        edges.append({"from": f"b{i}", "to": "join" if i < into_join else "done"})
    return ProcessGraph.model_validate({"key": "p", "steps": steps, "edges": edges})


def test_split_and_join_of_two_or_more_branches_are_clean() -> None:
    assert validate(graph(2, 2)) == []
    assert validate(graph(3, 3)) == []
    assert validate(graph(3, 2)) == []  # a branch may end on its own


def test_split_needs_two_branches() -> None:
    findings = validate(graph(1, 1))
    assert {(f.code, f.step) for f in findings} == {("step.default_edge_count", "split"),
                                                    ("join.incoming", "join")}


def test_join_needs_two_incoming_edges() -> None:
    (finding,) = validate(graph(2, 1))
    assert (finding.code, finding.step) == ("join.incoming", "join")
    assert "has 1" in finding.message

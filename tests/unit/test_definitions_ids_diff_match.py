"""Pure parts of the designer API: temporary ids, graph diffs, category matching."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.common.errors import Invalid
from services.definitions.diff import diff_graphs, is_empty
from services.definitions.graph_input import parse_graph, resolve_temp_ids, slug
from services.definitions.matching import Candidate, best_match

# --------------------------------------------------------------------------- temp ids


def seed_001_graph() -> dict[str, Any]:
    """Seed 001's create example, in Flowline's shape: nodes known only by temp_id."""
    return {"key": "it", "steps": [
        {"temp_id": "node_0", "type": "start"},
        {"temp_id": "node_1", "name": "Triage", "role": "agent", "weight": 0.2,
         "design": {"x": 100, "y": 100}},
        {"temp_id": "node_2", "name": "Resolution", "role": "tech", "weight": 0.6,
         "design": {"x": 300, "y": 100}},
        {"temp_id": "node_3", "name": "Verification", "role": "agent", "weight": 0.2,
         "design": {"x": 500, "y": 100}},
        {"temp_id": "node_4", "type": "terminal", "name": "Done"}],
        "edges": [{"from_temp_id": "node_0", "to_temp_id": "node_1"},
                  {"from_temp_id": "node_1", "to_temp_id": "node_2", "name": "Assign"},
                  {"from_temp_id": "node_2", "to_temp_id": "node_3", "name": "Complete"},
                  {"from_temp_id": "node_3", "to_temp_id": "node_4"}]}


def test_temp_ids_become_slugs_and_design_is_kept() -> None:
    graph, ids = parse_graph(seed_001_graph())
    assert ids == {"node_0": "node_0", "node_1": "triage", "node_2": "resolution",
                   "node_3": "verification", "node_4": "done"}
    assert [(e.from_, e.to) for e in graph.edges][1] == ("triage", "resolution")
    assert graph.steps[1].design == {"x": 100, "y": 100}
    assert "temp_id" not in graph.dump()["steps"][1]
    assert all("from_temp_id" not in e for e in graph.dump()["edges"])


def test_slugs_are_unique_and_never_take_an_existing_id() -> None:
    body = {"key": "p", "steps": [{"temp_id": "a", "name": "Inspect"},
                                  {"id": "inspect"},
                                  {"temp_id": "b", "name": "Inspect"},
                                  {"temp_id": "c", "name": "  !!  "},
                                  {"temp_id": 7, "name": "Prüfung Ø"}]}
    _, ids = resolve_temp_ids(body)
    assert ids == {"a": "inspect_2", "b": "inspect_3", "c": "c", "7": "prufung"}


def test_an_id_given_with_a_temp_id_wins_and_plain_ids_pass_through() -> None:
    body = {"key": "p", "steps": [{"temp_id": "t1", "id": "keep", "name": "Other"},
                                  {"id": "b"}],
            "edges": [{"from_temp_id": "t1", "to": "b"}]}
    resolved, ids = resolve_temp_ids(body)
    assert ids == {"t1": "keep"} and resolved["edges"] == [{"from": "keep", "to": "b"}]


@pytest.mark.parametrize(("body", "code"), [
    ({"key": "p", "steps": [{"temp_id": "a"}, {"temp_id": "a"}]}, "temp_id_duplicate"),
    ({"key": "p", "steps": [{"temp_id": "a"}], "edges": [{"from_temp_id": "a",
                                                          "to_temp_id": "zz"}]},
     "temp_id_unknown"),
    ({"key": "p", "steps": [{"temp_id": "a", "name": "A"}, {"id": "b"}],
      "edges": [{"from": "b", "from_temp_id": "a", "to": "b"}]}, "temp_id_conflict"),
    ({"key": "p", "steps": [{"temp_id": ""}]}, "temp_id_invalid"),
    ({"key": "p", "steps": [{"temp_id": {"x": 1}}]}, "temp_id_invalid"),
    ({"key": "p", "steps": [{"name": "no id at all"}]}, "invalid_request"),
])
def test_temp_id_mistakes_are_422s(body: dict[str, Any], code: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_graph(body)
    assert info.value.code == code


def test_slug() -> None:
    assert slug("Final QA (v2)") == "final_qa_v2"
    assert len(slug("x" * 500)) <= 190


# --------------------------------------------------------------------------- diff


def test_diff_reports_added_removed_and_changed_fields() -> None:
    old = {"key": "p", "name": "A", "version": 1, "steps": [
        {"id": "s", "type": "start"}, {"id": "t", "type": "task", "role": "a"},
        {"id": "gone", "type": "task"}],
        "edges": [{"from": "s", "to": "t", "type": "default"},
                  {"from": "t", "to": "gone", "type": "default", "name": "x"}]}
    new = {"key": "p", "name": "B", "version": 2, "steps": [
        {"id": "s", "type": "start"}, {"id": "t", "type": "task", "role": "b",
                                       "max_visits": 2},
        {"id": "new", "type": "task"}],
        "edges": [{"from": "s", "to": "t", "type": "default", "name": "go"},
                  {"from": "t", "to": "new", "type": "default"}]}
    d = diff_graphs(old, new)
    assert d["metadata"] == {"name": {"from": "A", "to": "B"}}  # version is not a graph field
    assert d["steps"]["added"] == [{"id": "new", "type": "task"}]
    assert [s["id"] for s in d["steps"]["removed"]] == ["gone"]
    assert d["steps"]["changed"] == [{"id": "t", "fields": {
        "max_visits": {"from": None, "to": 2}, "role": {"from": "a", "to": "b"}}}]
    assert d["edges"]["changed"] == [{"from": "s", "to": "t", "type": "default",
                                      "fields": {"name": {"from": None, "to": "go"}}}]
    assert [(e["from"], e["to"]) for e in d["edges"]["added"]] == [("t", "new")]
    assert [(e["from"], e["to"]) for e in d["edges"]["removed"]] == [("t", "gone")]
    assert not is_empty(d) and is_empty(diff_graphs(old, old))


def test_diff_pairs_parallel_edges_in_order() -> None:
    edge = {"from": "a", "to": "b", "type": "condition"}
    old = {"steps": [], "edges": [{**edge, "condition": {"value": 1}},
                                  {**edge, "condition": {"value": 2}}]}
    new = {"steps": [], "edges": [{**edge, "condition": {"value": 1}}]}
    d = diff_graphs(old, new)
    assert d["edges"]["removed"] == [{**edge, "condition": {"value": 2}}]
    assert d["edges"]["changed"] == []


# --------------------------------------------------------------------------- matching

T = datetime(2026, 1, 1, tzinfo=UTC)


def cand(key: str, sub: str | None = None, *, day: int = 1, dept: str = "IT",
         cat: str = "Technology") -> Candidate:
    graph = {"department": dept, "category": cat, **({"sub_category": sub} if sub else {})}
    return Candidate(key, 1, T.replace(day=day), graph)


def test_exact_sub_category_beats_a_general_process() -> None:
    found = best_match([cand("general", day=9), cand("vpn", "VPN"), cand("mail", "Mail")],
                       "IT", "Technology", "VPN")
    assert found is not None and found.candidate.key == "vpn" and found.exact


def test_general_process_when_no_sub_category_matches() -> None:
    found = best_match([cand("general"), cand("vpn", "VPN")], "IT", "Technology", "Printer")
    assert found is not None and (found.candidate.key, found.exact) == ("general", False)
    found = best_match([cand("general"), cand("vpn", "VPN")], "IT", "Technology", None)
    assert found is not None and found.candidate.key == "general"


def test_department_and_category_must_match_exactly() -> None:
    assert best_match([cand("a", dept="it"), cand("b", cat="Tech")], "IT", "Technology",
                      None) is None
    assert best_match([cand("vpn", "VPN")], "IT", "Technology", None) is None


def test_ties_go_to_the_newest_then_the_smallest_key() -> None:
    found = best_match([cand("b", day=2), cand("a", day=2), cand("c", day=1)], "IT",
                       "Technology", None)
    assert found is not None and found.candidate.key == "a"

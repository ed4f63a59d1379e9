"""Designer API over real HTTP: temp ids, details/graph edits, history, diff, export/import.

Same harness as test_definitions_api: uvicorn on a free port, SQLite, the session's broker.
"""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from services.definitions.templates import load_template
from tests.integration.test_definitions_api import REMAN, error_code

pytestmark = pytest.mark.integration
BASE = "/v1/processes/it"


def designer_graph() -> dict[str, Any]:
    """What a visual designer sends for a new process: temp ids, coordinates, extra fields."""
    return {
        "key": "it", "name": "IT Support", "category": "Technology", "department": "IT",
        "layout": {"zoom": 1.5, "grid": [20, 20]},  # a field Flowline does not know
        "steps": [
            {"temp_id": "n0", "type": "start", "design": {"x": 0, "y": 0}},
            {"temp_id": "n1", "name": "Triage", "role": "agent", "weight": 0.4,
             "design": {"x": 100, "y": 0}, "color": "#ffcc00"},
            {"temp_id": "n2", "name": "Resolution", "role": "tech", "weight": 0.6,
             "design": {"x": 300, "y": 0}},
            {"temp_id": "n3", "type": "terminal", "name": "Done",
             "terminal_status": "completed", "design": {"x": 500, "y": 0}}],
        "edges": [
            {"from_temp_id": "n0", "to_temp_id": "n1"},
            {"from_temp_id": "n1", "to_temp_id": "n2", "name": "Assign",
             "design": {"source_handle": "right"}},
            {"from_temp_id": "n2", "to_temp_id": "n3", "name": "Complete"}],
    }


def create(api: httpx.Client) -> dict[str, Any]:
    created = api.post("/v1/processes", json=designer_graph())
    assert created.status_code == 201, created.text
    return dict(created.json())


def approve(api: httpx.Client, key: str = "it") -> int:
    approved = api.post(f"/v1/processes/{key}/approve")
    assert approved.status_code == 200, approved.text
    return int(approved.json()["version"])


# --------------------------------------------------------------------------- graph API


def test_create_with_temp_ids_answers_the_stable_ids(api: httpx.Client) -> None:
    body = create(api)
    assert body["ids"] == {"n0": "n0", "n1": "triage", "n2": "resolution", "n3": "done"}
    draft = api.get(BASE).json()["draft"]
    assert [s["id"] for s in draft["steps"]] == ["n0", "triage", "resolution", "done"]
    assert draft["steps"][1]["design"] == {"x": 100, "y": 0}
    assert draft["steps"][1]["color"] == "#ffcc00" and draft["layout"]["zoom"] == 1.5
    assert draft["edges"][1] == {"from": "triage", "to": "resolution", "type": "default",
                                 "name": "Assign", "design": {"source_handle": "right"}}
    assert api.post(f"{BASE}/validate").json() == {"valid": True, "findings": []}


def test_temp_id_mistakes_are_json_422s(api: httpx.Client) -> None:
    bad = designer_graph()
    bad["edges"][0]["to_temp_id"] = "nope"
    refused = api.post("/v1/processes", json=bad)
    assert refused.status_code == 422 and error_code(refused) == "temp_id_unknown"
    shapeless = api.post("/v1/processes", json={"key": "x", "steps": [{"name": "no id"}]})
    assert shapeless.status_code == 422 and error_code(shapeless) == "invalid_request"
    assert shapeless.json()["error"]["details"][0]["loc"][:2] == ["body", "steps"]


def test_put_details_changes_metadata_only(api: httpx.Client) -> None:
    create(api)
    before = api.get(BASE).json()["draft"]
    changed = api.put(f"{BASE}/details", json={
        "name": "IT Support v2", "sub_category": "VPN", "description": None,
        "slas": {"urgent": "PT4H", "low": "P3D"},
        "end_actions": [{"type": "notification", "to": "requester"}]})
    assert changed.status_code == 200, changed.text
    after = changed.json()["graph"]
    assert (after["name"], after["sub_category"]) == ("IT Support v2", "VPN")
    assert after["category"] == "Technology"  # left out: kept
    assert after["slas"] == {"urgent": "PT4H", "low": "P3D"}
    assert after["end_actions"] == [{"type": "notification", "to": "requester"}]
    assert (after["steps"], after["edges"]) == (before["steps"], before["edges"])
    cleared = api.put(f"{BASE}/details", json={"sub_category": None}).json()["graph"]
    assert "sub_category" not in cleared and cleared["name"] == "IT Support v2"
    for wrong in ({"steps": []}, {"key": "other"}, {"slas": {"urgent": 4}}):
        refused = api.put(f"{BASE}/details", json=wrong)
        assert refused.status_code == 422, (wrong, refused.text)
        error_code(refused)


def test_put_graph_changes_steps_and_edges_only(api: httpx.Client) -> None:
    create(api)
    api.put(f"{BASE}/details", json={"description": "kept"})
    draft = api.get(BASE).json()["draft"]
    # The editor sends the saved steps back with their ids, plus one new node by temp id.
    steps = [*draft["steps"][:3], {"temp_id": "new1", "name": "Verification", "role": "agent",
                                   "design": {"x": 400, "y": 0}}, draft["steps"][3]]
    edges = [*draft["edges"][:2], {"from": "resolution", "to_temp_id": "new1"},
             {"from_temp_id": "new1", "to": "done", "name": "Verified"}]
    changed = api.put(f"{BASE}/graph", json={"steps": steps, "edges": edges})
    assert changed.status_code == 200, changed.text
    assert changed.json()["ids"] == {"new1": "verification"}
    graph = changed.json()["graph"]
    assert [s["id"] for s in graph["steps"]] == ["n0", "triage", "resolution", "verification",
                                                 "done"]
    assert graph["description"] == "kept" and graph["layout"] == draft["layout"]
    assert graph["steps"][3]["design"] == {"x": 400, "y": 0}
    assert api.post(f"{BASE}/validate").json()["valid"] is True
    refused = api.put(f"{BASE}/graph", json={"steps": steps, "edges": edges, "name": "x"})
    assert refused.status_code == 422  # metadata goes through /details


def test_partial_puts_need_a_draft(api: httpx.Client) -> None:
    for path, body in ((f"{BASE}/details", {"name": "x"}), (f"{BASE}/graph", {"steps": []})):
        assert error_code(api.put(path, json=body)) == "not_found"
    create(api)
    approve(api)
    for path, body in ((f"{BASE}/details", {"name": "x"}), (f"{BASE}/graph", {"steps": []})):
        refused = api.put(path, json=body)
        assert refused.status_code == 409 and error_code(refused) == "no_draft"


def test_put_whole_graph_accepts_temp_ids_too(api: httpx.Client) -> None:
    create(api)
    updated = api.put(BASE, json={**designer_graph(), "name": "Renamed"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["ids"]["n1"] == "triage"
    assert updated.json()["graph"]["name"] == "Renamed"


# --------------------------------------------------------------------------- history and diff


def test_version_history_and_diff(api: httpx.Client) -> None:
    create(api)
    approve(api)
    v2 = designer_graph()
    v2["steps"][2] = {**v2["steps"][2], "role": "senior_tech", "max_visits": 2}
    v2["steps"].insert(3, {"temp_id": "n9", "name": "Verify", "role": "agent"})
    v2["edges"][2] = {"from_temp_id": "n2", "to_temp_id": "n9"}
    v2["edges"].append({"from_temp_id": "n9", "to_temp_id": "n3"})
    v2["name"] = "IT Support v2"
    assert api.post("/v1/processes", json=v2).status_code == 201
    approve(api)
    assert api.post(f"{BASE}/pause?version=1").status_code == 200
    assert api.post(f"{BASE}/duplicate", json={"new_key": "it-copy"}).status_code == 201

    history = api.get(f"{BASE}/versions").json()
    assert [(v["version"], v["status"], v["copied_from"]) for v in history] == [
        (1, "paused", None), (2, "approved", None)]
    assert all(v["approved_at"] for v in history)
    approve(api, "it-copy")
    assert api.get("/v1/processes/it-copy/versions").json()[0]["copied_from"] == "it/2"
    assert api.get("/v1/processes/nope/versions").status_code == 404

    d = api.get(f"{BASE}/diff", params={"from": 1, "to": 2}).json()
    assert (d["from"], d["to"], d["identical"]) == (1, 2, False)
    assert d["metadata"] == {"name": {"from": "IT Support", "to": "IT Support v2"}}
    assert [s["id"] for s in d["steps"]["added"]] == ["verify"]
    assert d["steps"]["removed"] == []
    assert d["steps"]["changed"] == [{"id": "resolution", "fields": {
        "max_visits": {"from": None, "to": 2}, "role": {"from": "tech", "to": "senior_tech"}}}]
    assert {(e["from"], e["to"]) for e in d["edges"]["added"]} == {("resolution", "verify"),
                                                                  ("verify", "done")}
    assert [(e["from"], e["to"]) for e in d["edges"]["removed"]] == [("resolution", "done")]
    same = api.get(f"{BASE}/diff", params={"from": 2, "to": 2}).json()
    assert same["identical"] is True


def test_diff_against_the_draft_and_bad_labels(api: httpx.Client) -> None:
    create(api)
    approve(api)
    assert error_code(api.get(f"{BASE}/diff", params={"from": 1, "to": "draft"})) == "no_draft"
    api.post("/v1/processes", json=designer_graph())
    api.put(f"{BASE}/details", json={"department": "Ops"})
    d = api.get(f"{BASE}/diff", params={"from": 1, "to": "draft"}).json()
    assert d["to"] == "draft" and d["metadata"] == {"department": {"from": "IT", "to": "Ops"}}
    for params in ({"from": 1, "to": 9}, {"from": 0, "to": 1}, {"from": "x", "to": 1},
                   {"to": 1}):
        response = api.get(f"{BASE}/diff", params=params)
        assert response.status_code in (404, 422), (params, response.text)
        error_code(response)


# --------------------------------------------------------------------------- export / import


def test_export_round_trips_losslessly(api: httpx.Client) -> None:
    create(api)
    approve(api)
    exported = api.get(f"{BASE}/export", params={"version": 1})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-disposition"] == 'attachment; filename="it-v1.json"'
    graph = exported.json()
    assert graph["layout"] == {"zoom": 1.5, "grid": [20, 20]}
    assert graph["steps"][1]["color"] == "#ffcc00"
    assert graph["steps"][1]["design"] == {"x": 100, "y": 0}
    assert graph["edges"][1]["design"] == {"source_handle": "right"}
    assert not {"version", "status", "approved_at", "copied_from", "tenant"} & graph.keys()

    # Back in under another key (and another tenant): the same graph comes out again.
    acme = {"X-Flowline-Tenant": "acme"}
    assert api.post("/v1/processes", json={**graph, "key": "it-import"},
                    headers=acme).status_code == 201
    assert api.post("/v1/processes/it-import/approve", headers=acme).status_code == 200
    again = api.get("/v1/processes/it-import/export", headers=acme).json()
    assert again == {**graph, "key": "it-import"}
    # And under the same key it is a new version identical to the first.
    assert api.post("/v1/processes", json=graph).status_code == 201
    assert approve(api) == 2
    d = api.get(f"{BASE}/diff", params={"from": 1, "to": 2}).json()
    assert d["identical"] is True, d


def test_export_of_a_template_is_the_template(api: httpx.Client) -> None:
    reman = copy.deepcopy(REMAN)
    api.post("/v1/processes", json=reman)
    draft = api.get("/v1/processes/remanufacturing/export", params={"version": "draft"})
    assert draft.headers["content-disposition"].endswith('"remanufacturing-draft.json"')
    exported = draft.json()
    assert exported["steps"][1]["design"] == load_template("remanufacturing")["steps"][1][
        "design"]
    assert {s["id"] for s in exported["steps"]} == {s["id"] for s in reman["steps"]}
    assert api.get("/v1/processes/remanufacturing/export").status_code == 404  # no version
    assert api.get("/v1/processes/remanufacturing/export",
                   params={"version": "latest"}).status_code == 422


# --------------------------------------------------------------------------- condition rules


def test_condition_gaps_block_approval_with_findings(api: httpx.Client) -> None:
    gauge = {
        "key": "gauge", "steps": [
            {"id": "start", "type": "start"},
            {"id": "measure", "type": "decision", "decision_type": "measurement"},
            {"id": "ok", "type": "terminal", "terminal_status": "completed"},
            {"id": "scrap", "type": "terminal", "terminal_status": "scrapped"}],
        "edges": [
            {"from": "start", "to": "measure"},
            {"from": "measure", "to": "ok", "type": "condition",
             "condition": {"measurement": "bore_mm", "operator": "lt", "value": 5, "unit": "mm"}},
            {"from": "measure", "to": "scrap", "type": "condition",
             "condition": {"measurement": "bore_mm", "operator": "gt", "value": 5,
                           "unit": "mm"}}]}
    api.post("/v1/processes", json=gauge)
    checked = api.post("/v1/processes/gauge/validate").json()
    assert checked["valid"] is False
    (finding,) = checked["findings"]
    assert finding["code"] == "conditions.gap" and "at 5" in finding["message"]
    refused = api.post("/v1/processes/gauge/approve")
    assert refused.status_code == 422 and error_code(refused) == "invalid_graph"
    gauge["edges"][2]["condition"]["operator"] = "gte"
    assert api.put("/v1/processes/gauge", json=gauge).status_code == 200
    assert api.post("/v1/processes/gauge/approve").status_code == 200

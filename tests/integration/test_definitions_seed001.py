"""Seed 001's `POST /workflows/` body, sent as it is to `POST /v1/processes` over real HTTP."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

# Verbatim from seed 001 "Creating a Workflow".
SEED_BODY: dict[str, Any] = {
    "workflow": {
        "name": "IT Support Request",
        "description": "Standard IT support workflow",
        "category": "Technology",
        "sub_category": "Support Request",
        "department": "IT",
        "low_sla": "72:00:00",
        "medium_sla": "48:00:00",
        "high_sla": "24:00:00",
        "urgent_sla": "04:00:00",
        "end_logic": "notification",
    },
    "graph": {
        "nodes": [
            {"temp_id": "node_1", "name": "Triage", "role_id": 2, "is_start": True,
             "weight": 0.2, "design": {"x": 100, "y": 100}},
            {"temp_id": "node_2", "name": "Resolution", "role_id": 3, "weight": 0.6,
             "design": {"x": 300, "y": 100}},
            {"temp_id": "node_3", "name": "Verification", "role_id": 2, "is_end": True,
             "weight": 0.2, "design": {"x": 500, "y": 100}},
        ],
        "edges": [
            {"from_temp_id": "node_1", "to_temp_id": "node_2", "name": "Assign"},
            {"from_temp_id": "node_2", "to_temp_id": "node_3", "name": "Complete"},
        ],
    },
}


def test_the_seed_body_creates_a_valid_process(api: httpx.Client) -> None:
    created = api.post("/v1/processes", json=SEED_BODY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"] == "it_support_request"
    assert body["ids"] == {"node_1": "triage", "node_2": "resolution", "node_3": "verification"}
    graph = api.get("/v1/processes/it_support_request").json()["draft"]
    assert graph["slas"] == {"urgent": "04:00:00", "high": "24:00:00", "medium": "48:00:00",
                             "low": "72:00:00"}
    assert graph["end_actions"] == [{"type": "notification"}]
    assert graph["department"] == "IT" and graph["sub_category"] == "Support Request"
    steps = {s["id"]: s for s in graph["steps"]}
    assert steps["start"]["type"] == "start" and steps["end"]["type"] == "terminal"
    assert steps["triage"]["role"] == "role-2" and steps["resolution"]["role"] == "role-3"
    assert steps["verification"]["design"] == {"x": 500, "y": 100}
    edges = {(e["from"], e["to"]): e.get("name") for e in graph["edges"]}
    assert edges == {("start", "triage"): None, ("triage", "resolution"): "Assign",
                     ("resolution", "verification"): "Complete", ("verification", "end"): None}
    assert api.post("/v1/processes/it_support_request/validate").json() == {
        "valid": True, "findings": []}
    approved = api.post("/v1/processes/it_support_request/approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["version"] == 1


def test_two_start_nodes_and_bad_shapes_are_clear_422s(api: httpx.Client) -> None:
    two = copy.deepcopy(SEED_BODY)
    two["graph"]["nodes"][1]["is_start"] = True
    answer = api.post("/v1/processes", json=two)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"
    assert "is_start" in answer.json()["error"]["message"]
    bad = copy.deepcopy(SEED_BODY)
    bad["graph"]["nodes"] = "triage"
    answer = api.post("/v1/processes", json=bad)
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_request"


def test_unordered_slas_in_the_seed_shape_are_findings(api: httpx.Client) -> None:
    body = copy.deepcopy(SEED_BODY)
    body["workflow"]["name"] = "Backwards SLAs"
    body["workflow"]["urgent_sla"] = "96:00:00"
    assert api.post("/v1/processes", json=body).status_code == 201
    result = api.post("/v1/processes/backwards_slas/validate").json()
    assert result["valid"] is False
    assert any(f["severity"] == "error" and "sla" in f["code"] for f in result["findings"])

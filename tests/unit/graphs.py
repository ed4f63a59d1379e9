"""Process graphs for routing tests, built in code so each test says what it relies on."""

from __future__ import annotations

from typing import Any

from schemas.graph import ProcessVersion
from services.router.routing import Graph


def reman(max_rework: int = 3, max_final: int = 2) -> dict[str, Any]:
    """Seed 000's remanufacturing process: two rework loops, a scrap decision, four ends."""
    steps = [
        {"id": "start", "type": "start"},
        {"id": "receive", "type": "task", "role": "receiving"},
        {"id": "disassemble", "type": "task", "role": "technician"},
        {"id": "clean", "type": "task", "role": "cleaner"},
        {"id": "inspect", "type": "decision", "decision_type": "qa_result", "role": "inspector"},
        {"id": "rework", "type": "rework", "max_visits": max_rework,
         "revisit_assignment": "different", "role": "technician"},
        {"id": "reassemble", "type": "task", "role": "assembler"},
        {"id": "final_qa", "type": "decision", "decision_type": "qa_result", "role": "qa"},
        {"id": "rework_final", "type": "rework", "max_visits": max_final, "role": "technician"},
        {"id": "ship", "type": "task", "role": "shipping"},
        {"id": "scrap_decision", "type": "decision", "decision_type": "manual",
         "role": "supervisor"},
        {"id": "shipped", "type": "terminal", "terminal_status": "completed"},
        {"id": "scrapped", "type": "terminal", "terminal_status": "scrapped"},
        {"id": "returned", "type": "terminal", "terminal_status": "returned"},
    ]
    edges = [
        {"from": "start", "to": "receive"},
        {"from": "receive", "to": "disassemble"},
        {"from": "disassemble", "to": "clean"},
        {"from": "clean", "to": "inspect"},
        {"from": "inspect", "to": "reassemble"},
        {"from": "inspect", "to": "rework", "type": "alternate"},
        {"from": "rework", "to": "inspect"},
        {"from": "rework", "to": "scrap_decision", "type": "escalation"},
        {"from": "reassemble", "to": "final_qa"},
        {"from": "final_qa", "to": "ship"},
        {"from": "final_qa", "to": "rework_final", "type": "alternate"},
        {"from": "rework_final", "to": "final_qa"},
        {"from": "rework_final", "to": "scrap_decision", "type": "escalation"},
        {"from": "ship", "to": "shipped"},
        {"from": "scrap_decision", "to": "scrapped", "name": "scrap"},
        {"from": "scrap_decision", "to": "returned", "name": "return"},
    ]
    return {"key": "reman", "name": "Remanufacturing", "steps": steps, "edges": edges}


def gauged(tolerance: float | None = None, scrap_above: float = 10.1) -> dict[str, Any]:
    """A measurement decision: a bore in 9.9..10.1 mm (± `tolerance`) completes, one above
    `scrap_above` mm is scrapped."""
    in_range: dict[str, Any] = {"measurement": "bore", "operator": "between",
                                "values": [9.9, 10.1], "unit": "mm"}
    if tolerance is not None:
        in_range["tolerance"] = tolerance
    return {"key": "m", "steps": [
        {"id": "s", "type": "start"},
        {"id": "gauge", "type": "decision", "decision_type": "measurement"},
        {"id": "ok", "type": "terminal"},
        {"id": "bad", "type": "terminal", "terminal_status": "scrapped"}],
        "edges": [{"from": "s", "to": "gauge"},
                  {"from": "gauge", "to": "ok", "type": "condition", "condition": in_range},
                  {"from": "gauge", "to": "bad", "type": "condition", "condition": {
                      "measurement": "bore", "operator": "gt", "value": scrap_above,
                      "unit": "mm"}}]}


def compiled(graph: dict[str, Any], version: int = 1, status: str = "approved") -> Graph:
    return Graph.of(ProcessVersion.model_validate({**graph, "version": version,
                                                   "status": status}))

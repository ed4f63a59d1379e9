"""Process graph validation before approval (DESIGN §3). Pure: schemas and the standard library.

``validate(graph)`` returns every finding at once, so a designer fixes a graph in one round.
Errors block approval; warnings are shown but do not. Each finding has a stable ``code``
(``start.count``, ``cycle.unbounded``, ...) that clients may switch on, and names the step
and/or the edge (``"from->to"``) it is about.
"""

from __future__ import annotations

from collections import Counter

from schemas.durations import parse_duration
from schemas.graph import EdgeType, ProcessGraph, StepType
from services.definitions import rules_conditions, rules_flow
from services.definitions.findings import Finding, Severity, edge_id, error, has_errors, warning

SLA_ORDER = ("urgent", "high", "medium", "low")
WEIGHT_TOLERANCE = 0.001


def validate(graph: ProcessGraph) -> list[Finding]:
    """Every finding for ``graph``: structure, outgoing edges, conditions, flow and cycles,
    SLAs, weights, timers, subprocesses."""
    findings = _structure(graph)
    findings += rules_flow.outgoing_rules(graph)
    findings += rules_conditions.condition_rules(graph)
    findings += rules_flow.flow_rules(graph)
    findings += _slas(graph) + _weights(graph) + _timers(graph) + _subprocesses(graph)
    return findings


def _structure(graph: ProcessGraph) -> list[Finding]:
    out: list[Finding] = []
    counts = Counter(s.id for s in graph.steps)
    for step_id, n in counts.items():
        if n > 1:
            out.append(error("step.duplicate_id", f"step id {step_id!r} is used {n} times; "
                             "step ids must be unique", step=step_id))
    starts = [s.id for s in graph.steps if s.type == StepType.START]
    if len(starts) != 1:
        out.append(error("start.count", f"a process needs exactly one start step, found "
                         f"{len(starts)}" + (f": {', '.join(starts)}" if starts else ""),
                         step=starts[1] if len(starts) > 1 else None))
    terminals = [s for s in graph.steps if s.type == StepType.TERMINAL]
    if not terminals:
        out.append(error("terminal.missing", "a process needs at least one terminal step"))
    for step in terminals:
        if step.terminal_status is None:
            out.append(warning("terminal.status_missing", f"terminal {step.id!r} has no "
                               "terminal_status; instances ending there count as 'completed'",
                               step=step.id))
    for edge in graph.edges:
        unknown = [end for end in (edge.from_, edge.to) if end not in counts]
        if unknown:
            out.append(error("edge.unknown_step", f"edge {edge_id(edge)} names unknown step(s) "
                             f"{', '.join(map(repr, unknown))}", edge=edge_id(edge)))
        elif edge.from_ == edge.to:
            out.append(error("edge.self_loop", f"edge {edge_id(edge)} loops on itself; route "
                             "through a rework step with max_visits instead",
                             step=edge.from_, edge=edge_id(edge)))
        if edge.type == EdgeType.CONDITION and edge.condition is None:
            out.append(error("edge.condition_missing", f"condition edge {edge_id(edge)} has no "
                             "condition", step=edge.from_, edge=edge_id(edge)))
    return out


def _slas(graph: ProcessGraph) -> list[Finding]:
    if graph.slas is None:
        return []
    out: list[Finding] = []
    parsed = []
    for priority in SLA_ORDER:
        text = getattr(graph.slas, priority)
        if text is None:
            continue
        try:
            parsed.append((priority, parse_duration(text)))
        except ValueError as exc:
            out.append(error("sla.invalid_duration", f"SLA {priority}: {exc}"))
    for (p1, d1), (p2, d2) in zip(parsed, parsed[1:], strict=False):
        if not d1 < d2:
            out.append(error("sla.order", f"SLA {p1} ({d1}) must be shorter than {p2} ({d2}): "
                             "urgent < high < medium < low"))
    return out


def _weights(graph: ProcessGraph) -> list[Finding]:
    weighted = [s for s in graph.steps if s.weight is not None]
    out = [
        error("weight.range", f"step {s.id!r} has weight {s.weight}; weights are in [0, 1]",
              step=s.id)
        for s in weighted
        if s.weight is not None and not 0.0 <= s.weight <= 1.0
    ]
    total = sum(s.weight or 0.0 for s in weighted)
    if weighted and abs(total - 1.0) > WEIGHT_TOLERANCE:
        out.append(warning("weight.sum", f"step weights sum to {total:g}, not 1; SLA time is "
                           "shared out in proportion"))
    return out


def _timers(graph: ProcessGraph) -> list[Finding]:
    out: list[Finding] = []
    for step in graph.steps:
        if step.type != StepType.TIMER:
            continue
        try:
            parse_duration(step.timer or "")
        except ValueError as exc:
            out.append(error("timer.duration_invalid", f"timer step {step.id!r}: {exc}",
                             step=step.id))
    return out


def _subprocesses(graph: ProcessGraph) -> list[Finding]:
    """A subprocess step must say which process it runs (the router would hold the instance)."""
    return [error("subprocess.process_missing", f"subprocess step {s.id!r} names no process "
                  'to run: set "subprocess": {"process": KEY, "version": N or null}', step=s.id)
            for s in graph.steps if s.type == StepType.SUBPROCESS and s.subprocess is None]


__all__ = ["Finding", "Severity", "edge_id", "has_errors", "validate"]

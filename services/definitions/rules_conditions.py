"""Validation rules for condition edges of measurement and expression decisions. Pure.

The router tries a decision's condition edges in order and takes the first that holds; when
none holds the completion is rejected, and a unit mismatch puts the instance on hold. So per
measurement the conditions must cover every value (no gap) and exactly once (no overlap, or
edge order silently decides), all in one unit. Expressions are syntax-checked, never run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from schemas.graph import Condition, DecisionType, Edge, EdgeType, ProcessGraph, Step, StepType
from services.definitions import cel, thresholds
from services.definitions.coverage import Span, describe, gaps, overlap
from services.definitions.findings import Finding, edge_id, error, warning
from services.definitions.rules_flow import usable_edges

EVALUATED = (DecisionType.MEASUREMENT, DecisionType.EXPRESSION)


def condition_rules(graph: ProcessGraph) -> list[Finding]:
    """Findings for every decision whose routing evaluates its condition edges."""
    edges = usable_edges(graph)
    out: list[Finding] = []
    seen: set[str] = set()
    for step in graph.steps:
        if step.id in seen:  # a duplicated id is reported once, by the structural rules
            continue
        seen.add(step.id)
        mine = [e for e in edges if e.from_ == step.id and e.type == EdgeType.CONDITION]
        if step.type == StepType.DECISION and step.decision_type in EVALUATED:
            out += _decision(step, mine)
        else:
            # Routing evaluates conditions only on measurement/expression decisions; anywhere
            # else such an edge is taken only by its name, if it has one.
            out += [warning("conditions.not_evaluated", f"condition on {edge_id(e)} is never "
                            f"evaluated: {step.id!r} is not a measurement or expression "
                            "decision", step.id, edge_id(e)) for e in mine]
    return out


def _decision(step: Step, edges: Sequence[Edge]) -> list[Finding]:
    out: list[Finding] = []
    by_measurement: dict[str, list[tuple[Edge, Condition]]] = defaultdict(list)
    # Gaps are judged only when every condition is known and thresholds-only: a missing or
    # malformed condition is already a finding (and probably the one meant to fill the gap),
    # and an expression may cover what the thresholds leave out ("true" as a fallback).
    judge_gaps = True
    for e in edges:
        c = e.condition
        if c is None:  # edge.condition_missing
            judge_gaps = False
            continue
        mine = _one(step, e, c)
        out += mine
        if c.expression is not None or any(f.severity == "error" for f in mine):
            judge_gaps = False
        elif c.measurement is not None:
            by_measurement[c.measurement].append((e, c))
    if len(by_measurement) > 1:
        out.append(warning("conditions.measurements", f"decision {step.id!r} tests "
                           f"{', '.join(sorted(by_measurement))}; coverage is checked per "
                           "measurement and the first condition edge that holds wins", step.id))
    for name, pairs in by_measurement.items():
        out += _units(step, name, pairs) + _overlaps(step, name, pairs)
        if judge_gaps:
            out += _gaps(step, name, pairs)
    return out


def _one(step: Step, e: Edge, c: Condition) -> list[Finding]:
    """Problems of one condition on its own."""
    where = f"condition on {edge_id(e)}"
    if c.expression is not None:
        if c.measurement is not None:
            return [error("conditions.malformed", f"{where} has both an expression and a "
                          "measurement; use one (routing would only look at the expression)",
                          step.id, edge_id(e))]
        why = cel.syntax_error(c.expression)
        return [error("conditions.expression_invalid", f"{where}: the expression {why}",
                      step.id, edge_id(e))] if why else []
    if c.measurement is None:
        return [error("conditions.malformed", f"{where} names neither a measurement nor an "
                      "expression, so it never holds", step.id, edge_id(e))]
    out = [error("conditions.malformed", f"{where} {why}", step.id, edge_id(e))
           for why in thresholds.problems(c)]
    if not out and c.operator in thresholds.ONE_SIDED and c.tolerance:
        out.append(warning("conditions.tolerance_ignored", f"{where}: tolerance widens only "
                           f"'eq' and 'between'; on {c.operator.value!r} it has no effect",
                           step.id, edge_id(e)))
    return out


def _units(step: Step, name: str, pairs: Sequence[tuple[Edge, Condition]]) -> list[Finding]:
    units = {c.unit for _, c in pairs}
    if len(units) < 2:
        return []
    shown = ", ".join(sorted(u if u is not None else "no unit" for u in units))
    return [error("conditions.units", f"decision {step.id!r} compares {name} in mixed units "
                  f"({shown}); use one unit on every condition of a measurement", step.id)]


def _overlaps(step: Step, name: str, pairs: Sequence[tuple[Edge, Condition]]) -> list[Finding]:
    out: list[Finding] = []
    spans = [(e, thresholds.span(c)) for e, c in pairs]
    for i, (e1, s1) in enumerate(spans):
        for e2, s2 in spans[i + 1:]:
            both = overlap(s1, s2) if s1 is not None and s2 is not None else None
            if both is not None:
                out.append(error("conditions.overlap", f"decision {step.id!r}: {name} "
                                 f"{describe(both)} satisfies both {edge_id(e1)} and "
                                 f"{edge_id(e2)}; make the ranges disjoint", step.id,
                                 edge_id(e2)))
    return out


def _gaps(step: Step, name: str, pairs: Sequence[tuple[Edge, Condition]]) -> list[Finding]:
    spans: list[Span] = [s for _, c in pairs if (s := thresholds.span(c)) is not None]
    missing = gaps(spans)
    if not missing:
        return []
    return [error("conditions.gap", f"decision {step.id!r}: no condition edge accepts {name} "
                  f"{' or '.join(describe(g) for g in missing)}; cover every value (routing "
                  "would reject such a reading)", step.id)]

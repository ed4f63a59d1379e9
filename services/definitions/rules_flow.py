"""Validation rules about where a step can go: its outgoing edges, reachability and cycles.

Pure (schemas + standard library). Edges naming unknown steps and self-loops are reported by
the structural rules and left out here, so one mistake yields one finding, not a cascade.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from schemas.graph import DecisionType, Edge, EdgeType, ProcessGraph, Step, StepType
from services.definitions.findings import Finding, edge_id, error, warning
from services.definitions.graphs import reachable, reverse, strongly_connected


def usable_edges(graph: ProcessGraph) -> list[Edge]:
    """Edges between existing, distinct steps: the ones routing can actually follow."""
    ids = {s.id for s in graph.steps}
    return [e for e in graph.edges if e.from_ in ids and e.to in ids and e.from_ != e.to]


def _steps(graph: ProcessGraph) -> dict[str, Step]:
    # First occurrence wins for duplicated ids (reported separately).
    steps: dict[str, Step] = {}
    for step in graph.steps:
        steps.setdefault(step.id, step)
    return steps


def outgoing_rules(graph: ProcessGraph) -> list[Finding]:
    """Per step: what its outgoing edges and visit limits must look like for its type."""
    steps = _steps(graph)
    edges = usable_edges(graph)
    out: list[Finding] = []
    for step in steps.values():
        mine = [e for e in edges if e.from_ == step.id]
        kinds = Counter(e.type for e in mine)
        if step.type == StepType.TERMINAL:
            out += [error("terminal.outgoing", f"terminal {step.id!r} ends the instance and "
                          "cannot have outgoing edges", step.id, edge_id(e)) for e in mine]
        elif step.type == StepType.DECISION:
            out += _decision(step, mine, kinds)
        elif step.type == StepType.PARALLEL:
            # A split with one branch is a plain step; it is almost always a missing edge.
            if kinds[EdgeType.DEFAULT] < 2:
                out.append(error("step.default_edge_count", f"parallel split {step.id!r} needs "
                                 "at least two default edges (one per branch), has "
                                 f"{kinds[EdgeType.DEFAULT]}", step.id))
        elif kinds[EdgeType.DEFAULT] != 1:
            out.append(error("step.default_edge_count", f"{step.type.value} step {step.id!r} "
                             f"needs exactly one default edge, has {kinds[EdgeType.DEFAULT]}",
                             step.id))
        if step.type == StepType.JOIN:
            incoming = sum(1 for e in edges if e.to == step.id)
            if incoming < 2:
                out.append(error("join.incoming", f"join {step.id!r} waits for the branches of "
                                 f"a split and needs at least two incoming edges, has {incoming}",
                                 step.id))
        if step.type == StepType.REWORK and step.max_visits is None:
            out.append(error("rework.max_visits_missing", f"rework step {step.id!r} needs "
                             "max_visits so its loop ends", step.id))
        if step.max_visits is None:
            out += [error("escalation.source_unbounded", f"escalation edge {edge_id(e)} is "
                          f"only taken when {step.id!r} exhausts max_visits, which it lacks",
                          step.id, edge_id(e))
                    for e in mine if e.type == EdgeType.ESCALATION]
    return out


def _decision(step: Step, mine: Sequence[Edge], kinds: Counter[EdgeType]) -> list[Finding]:
    out: list[Finding] = []
    kind = step.decision_type
    if kind is None:
        out.append(warning("decision.type_missing", f"decision {step.id!r} has no "
                           "decision_type; treated as qa_result", step.id))
        kind = DecisionType.QA_RESULT
    if kind == DecisionType.QA_RESULT:
        if kinds[EdgeType.DEFAULT] == 0:
            out.append(error("decision.missing_pass", f"qa_result decision {step.id!r} needs a "
                             "default (pass) edge", step.id))
        if kinds[EdgeType.ALTERNATE] == 0:
            out.append(error("decision.missing_fail", f"qa_result decision {step.id!r} needs an "
                             "alternate (fail) edge", step.id))
        if kinds[EdgeType.DEFAULT] > 1 or kinds[EdgeType.ALTERNATE] > 1:
            out.append(error("decision.ambiguous", f"qa_result decision {step.id!r} has more "
                             "than one pass or fail edge; routing could not choose", step.id))
    elif kind == DecisionType.MANUAL:
        names = Counter(e.name for e in mine if e.name and e.type != EdgeType.ESCALATION)
        if not names:
            out.append(error("decision.no_named_edge", f"manual decision {step.id!r} needs at "
                             "least one named edge (the choices offered)", step.id))
        out += [error("decision.duplicate_name", f"manual decision {step.id!r} offers {name!r} "
                      f"{n} times", step.id) for name, n in names.items() if n > 1]
    elif kinds[EdgeType.CONDITION] == 0:
        out.append(error("decision.no_conditions", f"{kind.value} decision {step.id!r} needs "
                         "condition edges", step.id))
    return out


def flow_rules(graph: ProcessGraph) -> list[Finding]:
    """Reachability from the start, a way to a terminal, and bounded cycles."""
    steps = _steps(graph)
    edges = usable_edges(graph)
    adjacency: dict[str, list[str]] = {s: [] for s in steps}
    for e in edges:
        adjacency[e.from_].append(e.to)
    out: list[Finding] = []
    starts = [s.id for s in steps.values() if s.type == StepType.START]
    if len(starts) == 1:  # with none or several, "unreachable" would only echo start.count
        seen = reachable(adjacency, starts)
        out += [error("step.unreachable", f"step {s!r} cannot be reached from {starts[0]!r}",
                      s) for s in steps if s not in seen]
    terminals = [s.id for s in steps.values() if s.type == StepType.TERMINAL]
    if terminals:  # without any, every step would be a dead end echoing terminal.missing
        ending = reachable(reverse(adjacency), terminals)
        out += [error("step.dead_end", f"no path leads from {s!r} to a terminal step", s)
                for s, step in steps.items()
                if step.type != StepType.TERMINAL and s not in ending]
    return out + _cycles(steps, edges)


def _cycles(steps: dict[str, Step], edges: Sequence[Edge]) -> list[Finding]:
    """Every cycle must pass a step with max_visits whose escalation edge leaves the cycle.

    Components are taken over *all* edges, escalation included: an escalation that leads
    back into its own loop does not end it (once exhausted, the step escalates on every
    later entry, straight back into the loop). Within each strongly connected component the
    steps that bound it -- max_visits and an escalation edge out of the component -- are
    removed; whatever still forms a component is a loop that no visit limit ever breaks.
    """
    adjacency: dict[str, list[str]] = {s: [] for s in steps}
    for e in edges:
        adjacency[e.from_].append(e.to)
    out: list[Finding] = []
    for component in strongly_connected(list(steps), adjacency):
        if len(component) < 2:  # self-loops are excluded, so singletons are acyclic
            continue
        members = set(component)
        bounded = {
            s for s in component
            if steps[s].max_visits is not None
            and any(e.from_ == s and e.type == EdgeType.ESCALATION and e.to not in members
                    for e in edges)
        }
        rest = [s for s in component if s not in bounded]
        for sub in strongly_connected(rest, adjacency):
            if len(sub) > 1:
                out.append(error("cycle.unbounded", f"the loop through {', '.join(sub)} has no "
                                 "step with max_visits and an escalation edge out of it",
                                 sub[0]))
    return out

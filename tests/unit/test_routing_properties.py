"""Invariants of routing, over random graphs with rework loops and random completions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.messages import (
    ControlInstance,
    InstanceAction,
    StartInstance,
    StepCompletion,
    Subject,
)
from services.router.routing import decide
from services.router.routing.commands import child_id
from tests.unit.flows import DONE, SCRAPPED, START, World, process, qa, task
from tests.unit.graphs import compiled

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def looped_graphs(draw: Any) -> dict[str, Any]:
    """A chain of tasks and QA decisions; each decision's fail edge goes to a bounded rework
    loop that escalates to a manual scrap decision (the seed 000 pattern, repeated)."""
    n = draw(st.integers(1, 6))
    steps: list[dict[str, Any]] = [{"id": "start", "type": "start"},
                                   {"id": "done", "type": "terminal"},
                                   {"id": "scrapped", "type": "terminal",
                                    "terminal_status": "scrapped"},
                                   {"id": "scrap", "type": "decision", "decision_type": "manual"}]
    edges: list[dict[str, Any]] = [{"from": "scrap", "to": "scrapped", "name": "scrap"},
                                   {"from": "scrap", "to": "done", "name": "accept"}]
    prev = "start"
    for i in range(n):
        if draw(st.booleans()):
            steps.append({"id": f"s{i}", "type": "task"})
        else:
            steps.append({"id": f"s{i}", "type": "decision", "decision_type": "qa_result"})
            back = draw(st.sampled_from([f"s{j}" for j in range(i + 1)]))
            steps.append({"id": f"r{i}", "type": "rework",
                          "max_visits": draw(st.integers(1, 4))})
            edges += [{"from": f"s{i}", "to": f"r{i}", "type": "alternate"},
                      {"from": f"r{i}", "to": back},
                      {"from": f"r{i}", "to": "scrap", "type": "escalation"}]
        edges.append({"from": prev, "to": f"s{i}"})
        prev = f"s{i}"
    edges.append({"from": prev, "to": "done"})
    return {"key": "g", "steps": steps, "edges": edges}


def run(graph_json: dict[str, Any], choices: list[int]) -> list[Any]:
    g = compiled(graph_json)
    limits = {s.id: s.max_visits for s in g.version.steps if s.max_visits}
    d = decide(g, None, StartInstance(instance_id="i", process="g",
                                      subject=Subject(type="t", id="1")), "e0", T0)
    state, trace = d.state, [d]
    for n, choice in enumerate(choices, 1):
        assert state is not None
        if state.status != "running":
            break
        step = sorted(state.active)[0]
        outcomes = g.outcomes(g.steps[step]) or [None]
        outcome = outcomes[choice % len(outcomes)]
        d = decide(g, state, StepCompletion(instance_id="i", step=step, outcome=outcome),
                   f"e{n}", T0 + timedelta(seconds=n))
        # a duplicate of what was just applied is a no-op
        assert decide(g, d.state, StepCompletion(instance_id="i", step=step, outcome=outcome),
                      f"e{n}", T0).duplicate
        state = d.state or state
        trace.append(d)
        for cmd in d.commands:
            assert cmd.step in g.steps, "every command targets a step of its version"
            assert cmd.visit == state.visits[cmd.step]
        for step_id, limit in limits.items():
            assert state.visits.get(step_id, 0) <= limit, "visits never exceed max_visits"
        if state.status == "running":
            assert state.active, "a running instance always waits on a step"
        else:
            assert state.status == "completed" and not state.active and state.terminal_status
    return trace


@settings(max_examples=200, deadline=None)
@given(looped_graphs(), st.lists(st.integers(0, 5), max_size=80))
def test_invariants_hold_on_random_walks(graph_json, choices):
    run(graph_json, choices)


@settings(max_examples=50, deadline=None)
@given(looped_graphs(), st.lists(st.integers(0, 5), max_size=40))
def test_routing_is_deterministic(graph_json, choices):
    assert run(graph_json, choices) == run(graph_json, choices)


@settings(max_examples=100, deadline=None)
@given(looped_graphs())
def test_always_failing_still_terminates(graph_json):
    """Fail every decision: bounded loops must still bring the part to an end."""
    g = compiled(graph_json)
    state = decide(g, None, StartInstance(instance_id="i", process="g",
                                          subject=Subject(type="t", id="1")), "e0", T0).state
    for n in range(1, 500):
        assert state is not None
        if state.status != "running":
            break
        step = sorted(state.active)[0]
        outcome = "fail" if g.steps[step].type.value == "decision" else None
        if step == "scrap":
            outcome = "scrap"
        state = decide(g, state, StepCompletion(instance_id="i", step=step, outcome=outcome),
                       f"e{n}", T0).state or state
    assert state is not None and state.status == "completed"


# --- parallel sections ------------------------------------------------------------------------


class _Builder:
    """Builds a random block-structured graph: chains of tasks, QA decisions with bounded rework
    loops (back to any earlier element of the same chain, so also around a split) that escalate
    to a manual scrap/accept decision, and parallel blocks of 2-3 branches (nested up to 2
    deep) of which one may end on its own at the `completed` terminal."""

    def __init__(self, draw: Any) -> None:
        self.draw = draw
        self.n = 0
        self.steps: list[dict[str, Any]] = [
            {"id": "start", "type": "start"},
            {"id": "done", "type": "terminal", "terminal_status": "completed"},
            {"id": "scrapped", "type": "terminal", "terminal_status": "scrapped"}]
        self.edges: list[dict[str, Any]] = []
        self.blocks: dict[str, set[str]] = {}  # join -> every step inside its branches

    def new(self, prefix: str, kind: str, **fields: Any) -> str:
        self.n += 1
        step_id = f"{prefix}{self.n}"
        self.steps.append({"id": step_id, "type": kind, **fields})
        return step_id

    def edge(self, frm: str, to: str, kind: str = "default", name: str | None = None) -> None:
        self.edges.append({"from": frm, "to": to, "type": kind,
                           **({"name": name} if name else {})})

    def chain(self, depth: int, then: str) -> tuple[str, set[str]]:
        """A chain of 1-3 elements leading to `then`; (its entry, every step in it)."""
        entries: list[str] = []
        inside: set[str] = set()
        exits: list[tuple[str, str, str | None]] = []  # edges still to point at the next entry
        for _ in range(self.draw(st.integers(1, 3))):
            kind = self.draw(st.sampled_from(["task", "qa", "parallel"] if depth < 2
                                             else ["task", "qa"]))
            if kind == "task":
                entry = self.new("t", "task")
                new_exits = [(entry, "default", None)]
                ids = {entry}
            elif kind == "qa":
                entry = self.new("qa", "decision", decision_type="qa_result")
                rework = self.new("r", "rework", max_visits=self.draw(st.integers(1, 3)))
                manual = self.new("m", "decision", decision_type="manual")
                back = self.draw(st.sampled_from([*entries, entry]))
                self.edge(entry, rework, "alternate")
                self.edge(rework, back)
                self.edge(rework, manual, "escalation")
                self.edge(manual, "scrapped", name="scrap")
                new_exits = [(entry, "default", None), (manual, "default", "accept")]
                ids = {entry, rework, manual}
            else:
                entry, join = self.new("p", "parallel"), self.new("j", "join")
                branches = self.draw(st.integers(2, 3))
                alone = self.draw(st.integers(0, branches))  # == branches: none ends alone
                block: set[str] = set()
                for b in range(branches):
                    first, steps = self.chain(depth + 1, "done" if b == alone else join)
                    self.edge(entry, first)
                    block |= steps
                self.blocks[join] = block
                new_exits = [(join, "default", None)]
                ids = {entry, join} | block
            for frm, kind_, name in exits:
                self.edge(frm, entry, kind_, name)
            entries.append(entry)
            inside |= ids
            exits = new_exits
        for frm, kind_, name in exits:
            self.edge(frm, then, kind_, name)
        return entries[0], inside


@st.composite
def parallel_graphs(draw: Any) -> tuple[dict[str, Any], dict[str, set[str]]]:
    b = _Builder(draw)
    first, _ = b.chain(0, "done")
    b.edge("start", first)
    return {"key": "g", "steps": b.steps, "edges": b.edges}, b.blocks


def progress(step: Any, visit: int) -> str | None:
    """Fail each QA check once (every rework loop runs), then pass; accept escalations."""
    if step.decision_type == "qa_result":
        return "fail" if visit == 1 else "pass"
    return "accept" if step.decision_type == "manual" else None


def walk(graph_json: dict[str, Any], blocks: dict[str, set[str]],
         choices: list[tuple[int, int]]) -> list[Any]:
    """Complete random active steps with random outcomes, checking the invariants each time;
    once the drawn choices run out, keep going with `progress` until the instance ends."""
    g = compiled(graph_json)
    limits = {s.id: s.max_visits for s in g.version.steps if s.max_visits}
    d = decide(g, None, StartInstance(instance_id="i", process="g",
                                      subject=Subject(type="t", id="1")), "e0", T0)
    state, trace = d.state, [d]
    check(g, limits, blocks, d, d.state)
    for n in range(1, 1000):
        assert state is not None
        if state.status != "running":
            break
        which, pick = choices[n - 1] if n <= len(choices) else (n, -1)
        step = sorted(state.active)[which % len(state.active)]
        outcomes = g.outcomes(g.steps[step]) or [None]
        outcome = (outcomes[pick % len(outcomes)] if pick >= 0
                   else progress(g.steps[step], state.active[step]))
        completion = StepCompletion(instance_id="i", step=step, outcome=outcome)
        d = decide(g, state, completion, f"e{n}", T0 + timedelta(seconds=n))
        assert decide(g, d.state, completion, f"e{n}", T0).duplicate
        state = d.state or state
        check(g, limits, blocks, d, state)
        trace.append(d)
    return trace


def check(g: Any, limits: dict[str, int], blocks: dict[str, set[str]], d: Any,
          state: Any) -> None:
    assert d.rejection is None, d.rejection
    assert state.status in ("running", "completed"), state.hold_reason
    for cmd in d.commands:
        assert cmd.step in g.steps and cmd.visit == state.visits[cmd.step]
    for step_id, limit in limits.items():
        assert state.visits.get(step_id, 0) <= limit, "visits never exceed max_visits"
    assert set(state.lanes) <= set(state.active)
    assert all(lane["split"] in state.splits for lane in state.lanes.values())
    for ev in d.events:
        if ev.kind == "step_completed" and ev.step in blocks:
            early = blocks[ev.step] & set(state.active)
            assert not early, f"join {ev.step} fired while {early} of its branches were active"
    if state.status == "running":
        assert state.active, "a running instance always waits on a step"
    else:
        assert not state.active and not state.splits and not state.lanes
        assert state.terminal_status


@settings(max_examples=200, deadline=None)
@given(parallel_graphs(), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)),
                                   max_size=120))
def test_parallel_invariants_hold_on_random_walks(graph_and_blocks, choices):
    walk(*graph_and_blocks, choices)


@settings(max_examples=50, deadline=None)
@given(parallel_graphs(), st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)),
                                   max_size=60))
def test_parallel_routing_is_deterministic(graph_and_blocks, choices):
    assert walk(*graph_and_blocks, choices) == walk(*graph_and_blocks, choices)


@settings(max_examples=100, deadline=None)
@given(parallel_graphs(), st.integers(0, 5))
def test_failing_every_check_in_every_branch_still_ends(graph_and_blocks, which):
    """Fail every QA check and accept every escalation: the bounded loops must still let every
    branch through its join, and the instance end."""
    graph_json, blocks = graph_and_blocks
    g = compiled(graph_json)
    state = decide(g, None, StartInstance(instance_id="i", process="g",
                                          subject=Subject(type="t", id="1")), "e0", T0).state
    for n in range(1, 2000):
        assert state is not None and state.status in ("running", "completed")
        if state.status != "running":
            break
        step = sorted(state.active)[(which + n) % len(state.active)]
        outcome = {"qa_result": "fail", "manual": "accept"}.get(g.steps[step].decision_type or "")
        state = decide(g, state, StepCompletion(instance_id="i", step=step, outcome=outcome),
                       f"e{n}", T0).state or state
    assert state is not None and state.status == "completed"


# --- subprocess trees -------------------------------------------------------------------------


@st.composite
def process_trees(draw: Any) -> list[dict[str, Any]]:
    """Processes `l0`..`l<depth-1>`: each runs 1-3 branches (in parallel when more than one),
    each a task, a QA check whose fail scraps, or a subprocess running the next level whose
    failure scraps too. A scrap in one branch ends the instance with the others still open."""
    depth = draw(st.integers(1, 3))
    graphs = []
    for level in range(depth):
        kinds = ["task", "qa", "sub"] if level < depth - 1 else ["task", "qa"]
        branches = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3))
        split = len(branches) > 1
        steps: list[dict[str, Any]] = [START, DONE, SCRAPPED]
        edges: list[Any] = []
        if split:
            steps += [{"id": "split", "type": "parallel"}, {"id": "join", "type": "join"}]
            edges += [("start", "split"), ("join", "done")]
        for n, kind in enumerate(branches):
            b = f"b{n}"
            runs = {"process": f"l{level + 1}"}
            steps.append(task(b) if kind == "task" else qa(b) if kind == "qa" else
                         {"id": b, "type": "subprocess", "subprocess": runs})
            edges += [("split" if split else "start", b), (b, "join" if split else "done")]
            if kind != "task":
                edges.append((b, "scrapped", "alternate"))
        graphs.append(process(f"l{level}", steps, edges))
    return graphs


def step_type(w: World, iid: str, step: str) -> str:
    s = w.state(iid)
    return w.graphs[s.process_key][s.version].steps[step].type.value


def no_orphans(w: World) -> None:
    """Every child a running instance waits on runs; every running child's parent waits on it."""
    assert not [eid for eid, d in w.log if d.rejection], "no request lands on an ended instance"
    for iid, s in w.states.items():
        for step, visit in s.active.items():
            if step_type(w, iid, step) == "subprocess":
                assert w.state(child_id(iid, step, visit)).status == "running"
        if s.parent and s.status == "running":
            up = w.state(s.parent["instance_id"])
            assert up.status == "running" and up.active.get(s.parent["step"]) == s.parent["visit"]


@settings(max_examples=150, deadline=None)
@given(process_trees(), st.lists(st.integers(0, 50), max_size=30))
def test_no_child_outlives_its_parent(graphs, choices):
    """Random work and cancels anywhere in a tree of subprocesses; then cancel the root."""
    w = World(*(compiled(g) for g in graphs))
    w.start("l0")
    for choice in choices:
        live = sorted(iid for iid, s in w.states.items() if s.status == "running")
        if not live:
            break
        work = [(iid, step) for iid in live for step in sorted(w.state(iid).active)
                if step_type(w, iid, step) != "subprocess"]
        if choice % 5 == 0 or not work:
            w.feed(ControlInstance(instance_id=live[choice % len(live)],
                                   action=InstanceAction.CANCEL))
        else:
            iid, step = work[choice % len(work)]
            decision = step_type(w, iid, step) == "decision"
            w.done(step, ("fail" if choice % 3 == 0 else "pass") if decision else None,
                   instance=iid)
        no_orphans(w)
    if w.state("p1").status == "running":
        w.feed(ControlInstance(instance_id="p1", action=InstanceAction.CANCEL))
    no_orphans(w)
    assert all(s.status != "running" for s in w.states.values())

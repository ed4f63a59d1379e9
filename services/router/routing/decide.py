"""`decide(graph, state, message, event_id, now) -> Decision`: all of Flowline's routing.

Pure: no I/O, no clock, no randomness. The shell passes in the process version, the stored state,
the decoded message, its CloudEvent id and its event time, and then stores and sends what comes
back. The same inputs always give the same Decision, so a replay after a crash re-emits
byte-identical commands (consumers dedupe them by `command_id`).

Semantics (DESIGN.md §4): entering a step increments its visit count; before entering T, if
`visits[T] >= T.max_visits`, T's escalation edge is followed instead (checked again at the
target). Start and parallel steps pass through; a parallel split sends a token down each of its
default edges and a join waits for all of them (parallel.py). A terminal ends the instance, with
one exception inside a parallel branch: a `completed` terminal ends only that branch (BPMN's
plain end event) and the instance completes when its last branch does; any other terminal
status (scrapped, returned, ...) ends the instance at once and clears its other branches (BPMN's
terminate end event), so a part scrapped in one branch is scrapped. Every other step waits:
task, decision, rework, automated, timer (its command says when to wake it: `wake_at`) and
subprocess (it also starts a child instance, whose end completes the step with the child's
terminal status as the outcome).

Children never outlive their parent: an instance that ends while subprocess steps are active (it
is cancelled, or a terminating end event closes a branch that waits on a child) sends a cancel
to each child it waits on, by step id. The child's id is derived from the step and visit as
at its start, so no more state is kept. The cancel names the parent (`ControlInstance.parent`),
and a child cancelled by its own parent does not complete the parent's step: that step is gone,
and its completion could only be rejected. Any other cancel of a child still reports
`cancelled` to its parent. Grandchildren follow as the child's own end cascades the same way.
A cancel that finds its child already ended is rejected like any late request. A hold leaves
children running: it pauses this instance's routing, not work under way elsewhere.

So a child may end while its parent is held. Its completion of the parent's subprocess step
(the step is active and the completion names its visit, as a child's always does) is not
rejected: it is kept in the state (`InstanceState.deferred`), checked as it would be were the
parent running (an outcome with no edge is rejected now, not at the resume), and nothing is
routed, sent or emitted. The resume applies what was kept, in arrival order, each as if it had
just arrived: the usual step_completed, step_entered and commands follow the `resumed` event,
with the deferred completion's id as their `source_event_id`; command and request ids derive
from instance, step and visit as always. A completion that ends or holds the parent again stops
the rest (an end drops them, a hold keeps them for the next resume). A redelivered deferred
completion is a duplicate; a second one for the same step and visit is stale. A cancel drops
what was kept and sends no cancel to those children (they have ended); a migrate waits for the
resume. Completions of any other step of a held instance are rejected (`instance_not_running`).

A hold raised by routing while entering a step (an edge to an unknown step, a step already
active, max_visits with no escalation edge, a step that cannot be entered as designed, a start or
a fired join with no default edge, routing that does not settle) stops only the token it was
routing, and that token is kept in the state (`InstanceState.pending`: step, reason, lane; for a
start or join, to be left by its default edge). The resume, after applying the deferred
completions, retries the kept tokens in order through the same entering code, so the ids and
events are those they would have had; a token that meets its problem again is kept again and the
instance is held again with the reason. A migrate may fix the problem first (a held instance may
migrate once nothing is deferred; kept tokens follow its `step_map`); a cancel or any end drops
what was kept. A resume with `drop_held` drops the kept tokens instead of retrying them (a
token on a parallel branch closes its branch, so the join still fires once the others are in;
see `_Run._resume_dropping`), for holds nothing can fix, such as two branches reaching a step
that is already active. A hold raised while choosing the edge out of a completed step (a
condition with a missing measurement or a unit mismatch) keeps nothing: the step stays active at
its visit, and after the resume a new completion that carries what was missing routes on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.durations import parse_duration
from schemas.graph import DecisionType, Edge, EdgeType, ProcessVersion, Step, StepType
from schemas.messages import (
    ControlInstance,
    InstanceAction,
    InstanceEvent,
    InstanceEventKind,
    ParallelState,
    ParentRef,
    RejectReason,
    StartInstance,
    StepCommand,
    StepCompletion,
)
from schemas.migration import plan_migration
from services.router.routing import parallel
from services.router.routing.commands import (
    child_cancel,
    child_start,
    parent_completion,
    process_ref,
    step_command,
    subject_of,
)
from services.router.routing.conditions import Facts, Hold, choose_condition_edge
from services.router.routing.graph import Graph
from services.router.routing.state import (
    CANCELLED,
    COMPLETED,
    ON_HOLD,
    RUNNING,
    Deferred,
    InstanceState,
    Lane,
    Pending,
)

Message = StartInstance | StepCompletion | ControlInstance
Request = StartInstance | StepCompletion | ControlInstance
Token = tuple[str, str, Lane | None]  # (step to enter, why, the parallel branch it is on)
_WAITING = {StepType.TASK, StepType.DECISION, StepType.REWORK, StepType.AUTOMATED,
            StepType.TIMER, StepType.SUBPROCESS}
NOT_STARTED = "not_started"  # the outcome a parent sees when its child could not start


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str


@dataclass
class Decision:
    """What to do: store `state` (when not None), send `commands`, `events` and `requests`.

    `requests` go to the router's own input topics: a `StartInstance` (a subprocess step starts
    its child) and a cancel `ControlInstance` (an ended parent stops its child) to
    instance-requests, a `StepCompletion` (a child ended and completes its parent's step) to
    step-completions, each keyed by its `instance_id`.
    """

    state: InstanceState | None
    commands: list[StepCommand] = field(default_factory=list)
    events: list[InstanceEvent] = field(default_factory=list)
    rejection: Rejection | None = None
    duplicate: bool = False
    requests: list[Request] = field(default_factory=list)


def resolve_version(
    versions: dict[int, ProcessVersion], requested: int | None
) -> ProcessVersion | None:
    """The named version, or the latest approved one when none is named."""
    if requested is not None:
        return versions.get(requested)
    approved = [v for n, v in versions.items() if v.status == "approved"]
    return max(approved, key=lambda v: v.version) if approved else None


def decide(
    graph: Graph | None,
    state: InstanceState | None,
    message: Message,
    event_id: str,
    now: datetime,
    target: Graph | None = None,
) -> Decision:
    """`target` is the version a `migrate` control names (the shell looks it up)."""
    if state is not None and event_id in state.recent_event_ids:
        return Decision(state=None, duplicate=True)
    if isinstance(message, StartInstance):
        return _start(graph, state, message, event_id, now)
    if state is None:
        return _reject_unknown(message, event_id, now)
    now = _not_before(now, state.updated_at)
    if graph is None:
        return _Run(None, state, event_id, now).reject(
            RejectReason.UNKNOWN_PROCESS,
            f"process {state.process_key} v{state.version} is not known to this router",
        )
    run = _Run(graph, state.copy(), event_id, now)
    if isinstance(message, StepCompletion):
        return run.complete(message)
    if message.action == InstanceAction.MIGRATE:
        return run.migrate(message, target)
    return run.control(message)


def _not_before(now: datetime, last_change: str) -> datetime:
    """An instance's clock never runs backwards.

    `now` is the record's own time, and records come from several producers: a timer's
    fired completion carries its due time but may reach the log after an operator's later
    completion of the other branch. Decided at its own time, the join it fires would be
    left before it was entered. Such a record is decided at the instance's last change.
    """
    if not last_change:
        return now
    previous = datetime.fromisoformat(last_change)
    return previous if previous > now else now


def _start(
    graph: Graph | None, state: InstanceState | None, msg: StartInstance, event_id: str,
    now: datetime,
) -> Decision:
    if graph is None:
        wanted = f"v{msg.version}" if msg.version is not None else "an approved version"
        return _not_started(msg, state, RejectReason.UNKNOWN_PROCESS,
                            f"process {msg.tenant}/{msg.process} has no {wanted}")
    if graph.version.status != "approved":
        return _not_started(
            msg, state, RejectReason.PROCESS_NOT_ACTIVE,
            f"process {msg.process} v{graph.version.version} is {graph.version.status}",
        )
    if state is not None:
        return _rejected(RejectReason.INSTANCE_EXISTS, f"instance {msg.instance_id} exists")
    if graph.start is None:
        return _not_started(msg, state, RejectReason.UNKNOWN_PROCESS,
                            f"process {msg.process} has no start")
    at = now.isoformat()
    new = InstanceState(
        instance_id=msg.instance_id,
        tenant=msg.tenant,
        process_key=graph.version.key,
        version=graph.version.version,
        subject=msg.subject.dump(),
        priority=msg.priority.value,
        work_order=msg.work_order,
        context=dict(msg.context),
        started_at=at,
        updated_at=at,
        parent=msg.parent.dump() if msg.parent else None,
    )
    run = _Run(graph, new, event_id, now)
    run.event(InstanceEventKind.STARTED, status=RUNNING)
    run.enter(graph.start, reason="started")
    return run.done()


def _rejected(reason: RejectReason, detail: str) -> Decision:
    return Decision(state=None, rejection=Rejection(reason, detail))


def _not_started(msg: StartInstance, state: InstanceState | None, reason: RejectReason,
                 detail: str) -> Decision:
    """Reject a start; a parent waiting on this child hears it, rather than waiting forever.

    Not when the child exists: then this is a redelivered start, and the child will answer.
    """
    decision = _rejected(reason, detail)
    if msg.parent is not None and state is None:
        decision.requests.append(parent_completion(msg.parent, msg.instance_id, NOT_STARTED))
    return decision


def _reject_unknown(message: Message, event_id: str, now: datetime) -> Decision:
    detail = f"no instance {message.instance_id}"
    event = InstanceEvent(
        kind=InstanceEventKind.REJECTED, instance_id=message.instance_id, at=now.isoformat(),
        reason=RejectReason.UNKNOWN_INSTANCE.value, source_event_id=event_id,
        step=getattr(message, "step", None),
    )
    return Decision(None, events=[event],
                    rejection=Rejection(RejectReason.UNKNOWN_INSTANCE, detail))


class _Run:
    """One decision in progress: mutates its own copy of the state, collects the outputs."""

    def __init__(self, graph: Graph | None, state: InstanceState, event_id: str, now: datetime):
        self.graph = graph
        self.state = state
        self.event_id = event_id
        self.now = now
        self.at = now.isoformat()
        self.commands: list[StepCommand] = []
        self.events: list[InstanceEvent] = []
        self.requests: list[Request] = []
        self.branch_ended: tuple[str, int] | None = None  # the last `completed` branch end
        self.source = event_id  # what events name as their cause: a deferred completion's id
        self.had_parallel = bool(state.lanes or state.splits)  # see `done`

    # --- outputs -----------------------------------------------------------------------------

    def done(self) -> Decision:
        """The decision; its last event carries the parallel state when there is (or was) one.

        So a read model (the tasks service's journey) can keep the lanes and splits an instance
        inside a parallel block has, for a migration dry run to check them as the router will,
        and clear them when it leaves its last block (then `parallel` is empty). Instances that
        never enter a parallel block pay nothing: their events carry no `parallel`.
        """
        s = self.state
        s.updated_at = self.at
        s.remember(self.event_id)
        if self.events and (self.had_parallel or s.lanes or s.splits):
            snapshot = ParallelState.model_validate(
                {"lanes": copy.deepcopy(s.lanes), "splits": copy.deepcopy(s.splits)})
            self.events[-1] = self.events[-1].model_copy(update={"parallel": snapshot})
        return Decision(s, self.commands, self.events, requests=self.requests)

    def reject(self, reason: RejectReason, detail: str, step: str | None = None) -> Decision:
        """The instance stays as it was; the rejection is visible on its event stream too."""
        self.events = [self._event(InstanceEventKind.REJECTED, step=step, reason=reason.value)]
        return Decision(None, [], self.events, Rejection(reason, f"{detail}"))

    def event(self, kind: InstanceEventKind, **fields: Any) -> None:
        self.events.append(self._event(kind, **fields))

    def _event(self, kind: InstanceEventKind, **fields: Any) -> InstanceEvent:
        s = self.state
        return InstanceEvent(
            kind=kind, instance_id=s.instance_id, tenant=s.tenant,
            process=process_ref(s.process_key, s.version), at=self.at,
            subject=subject_of(s), work_order=s.work_order,
            source_event_id=self.source, **fields,
        )

    def hold(self, reason: str) -> None:
        self.state.status = ON_HOLD
        self.state.hold_reason = reason
        self.event(InstanceEventKind.HELD, reason=reason, status=ON_HOLD)

    def end(self, status: str, terminal_status: str, kind: InstanceEventKind,
            tell_parent: bool = True, **fields: Any) -> None:
        """End the instance: nothing stays active, no child runs on, a parent is told how it ended.

        The parent's completion comes first, so its request id is the one it always had.
        """
        s = self.state
        children = self._children()
        s.status, s.terminal_status = status, terminal_status
        s.active.clear()
        s.lanes.clear()
        s.splits.clear()
        s.deferred.clear()  # what a held instance kept for its resume goes with it
        s.pending.clear()  # and so do the tokens a routing hold interrupted
        self.event(kind, terminal_status=terminal_status, status=status, **fields)
        if s.parent is not None and tell_parent:
            self.requests.append(parent_completion(ParentRef.model_validate(s.parent),
                                                   s.instance_id, terminal_status))
        why = (f"parent {s.instance_id} cancelled" if status == CANCELLED
               else f"parent {s.instance_id} ended: {terminal_status}")
        for step, visit in children:
            self.requests.append(child_cancel(s, step, visit, why, fields.get("operator")))

    def _children(self) -> list[tuple[str, int]]:
        """The (step, visit) of every active subprocess step whose child may still run.

        A step with a deferred completion is left out: its child has ended already.
        """
        assert self.graph is not None
        steps = self.graph.steps
        ended = {_step_visit(d) for d in self.state.deferred}
        return [(step, visit) for step, visit in sorted(self.state.active.items())
                if step in steps and steps[step].type == StepType.SUBPROCESS
                and (step, visit) not in ended]

    # --- entering steps ----------------------------------------------------------------------

    def enter(self, target: str, reason: str, lane: Lane | None = None) -> None:
        """Enter `target` and whatever follows it without waiting for a completion.

        Tokens (a split makes several) are followed depth first in edge order, so the outputs
        are deterministic. A hold stops only the token that caused it; an ended instance stops
        them all.
        """
        assert self.graph is not None
        s = self.state
        todo: list[Token] = [(target, reason, lane)]
        budget = 4 * len(self.graph.steps) + 4  # a malformed graph cannot spin forever
        while todo and s.status != COMPLETED:
            budget -= 1
            if budget < 0:
                for token in todo:  # what is left waits for the resume, like any held token
                    self._keep(token)
                return self.hold("routing did not settle: the graph loops through "
                                 "pass-through steps")
            todo[:0] = self._step(*todo.pop(0))
        if self.branch_ended and s.status == RUNNING and not s.active and not s.splits:
            step, visit = self.branch_ended  # the last branch ended: so does the instance
            self.end(COMPLETED, "completed", InstanceEventKind.COMPLETED, step=step, visit=visit)
        return None

    def _step(self, target: str, reason: str, lane: Lane | None) -> list[Token]:
        """Enter one step on one token; the tokens to enter next."""
        assert self.graph is not None
        s = self.state
        step = self.graph.steps.get(target)
        token: Token = (target, reason, lane)
        if step is None:
            return self._hold(f"edge leads to unknown step {target!r}", token)
        if target in s.active:
            return self._hold(f"two branches reached {target}, which is already active: "
                              "parallel branches cannot share a step; resume with drop_held "
                              f"to go on with the active {target}, or migrate or cancel the "
                              "instance", token)
        if step.type == StepType.JOIN:
            problem = parallel.join_problem(s, lane, target)
            if problem:
                return self._hold(problem, token)
            assert lane is not None
            if parallel.gathering(s, lane, target):  # the join's visit is already counted
                return self._fired(parallel.arrive(s, lane))
        visits = s.visits.get(target, 0)
        if step.max_visits is not None and visits >= step.max_visits:
            escalation = self.graph.edge(target, EdgeType.ESCALATION)
            if escalation is None:
                return self._hold(f"{target} reached max_visits={step.max_visits} "
                                  "and has no escalation edge", token)
            self.event(InstanceEventKind.ESCALATED, step=target, to_step=escalation.to,
                       visits=dict(s.visits), reason=f"max_visits={step.max_visits}")
            return [(escalation.to, "escalated", lane)]
        problem = self._cannot_enter(step, lane)
        if problem:
            return self._hold(problem, token)
        s.visits[target] = visit = visits + 1
        self.event(InstanceEventKind.STEP_ENTERED, step=target, step_type=step.type.value,
                   visit=visit, visits=dict(s.visits), reason=reason)
        if step.type in (StepType.START, StepType.PARALLEL):
            self.event(InstanceEventKind.STEP_COMPLETED, step=target, visit=visit)
        if step.type == StepType.START:
            return self._leave(target, "started", lane)
        if step.type == StepType.PARALLEL:
            branches = [e.to for e in self.graph.defaults(target)]
            lanes = parallel.open_split(s, target, visit, branches, lane)
            return [(branch["branch"], reason, branch) for branch in lanes]
        if step.type == StepType.JOIN:
            assert lane is not None
            parallel.start_gathering(s, lane, target, visit)
            return self._fired(parallel.arrive(s, lane))
        if step.type == StepType.TERMINAL:
            return self._terminal(step, visit, lane)
        assert step.type in _WAITING  # every step type is handled above or waits
        s.active[target] = visit
        if lane is not None:
            s.lanes[target] = lane
        self.commands.append(step_command(self.graph, s, step, visit, reason, self.now,
                                          self._wake_at(step)))
        if step.type == StepType.SUBPROCESS:
            self.requests.append(child_start(s, step, visit))
        return []

    def _cannot_enter(self, step: Step, lane: Lane | None) -> str | None:
        """Why `step` cannot be entered as designed (checked before its visit counts)."""
        assert self.graph is not None
        if step.type == StepType.PARALLEL:
            if not self.graph.defaults(step.id):
                return f"parallel split {step.id} has no default edges"
            return parallel.loop_problem(self.state, lane, step.id)
        if step.type == StepType.SUBPROCESS and step.subprocess is None:
            return f"subprocess step {step.id} names no process to run"
        if step.type == StepType.TIMER:
            try:
                parse_duration(step.timer or "")
            except ValueError as exc:
                return f"timer step {step.id}: {exc}"
        return None

    def _wake_at(self, step: Step) -> str | None:
        """When a timer step is due: now + its duration (checked by `_cannot_enter`)."""
        if step.type != StepType.TIMER:
            return None
        return (self.now + parse_duration(step.timer or "")).isoformat()

    def _terminal(self, step: Step, visit: int, lane: Lane | None) -> list[Token]:
        status = step.terminal_status.value if step.terminal_status else "completed"
        if lane is not None and status == "completed":
            self.branch_ended = (step.id, visit)  # see the module docstring
            return self._fired(parallel.end(self.state, lane))
        self.end(COMPLETED, status, InstanceEventKind.COMPLETED, step=step.id, visit=visit)
        return []

    def _fired(self, fire: parallel.Fire | None) -> list[Token]:
        """A join that fired leaves on its default edge, on the lane its split was entered on."""
        assert self.graph is not None
        if fire is None:
            return []
        self.event(InstanceEventKind.STEP_COMPLETED, step=fire.join, visit=fire.visit)
        return self._leave(fire.join, "joined", fire.lane)

    def _leave(self, step_id: str, reason: str, lane: Lane | None) -> list[Token]:
        """Leave a start or a fired join by its default edge (it is entered already)."""
        assert self.graph is not None
        onward = self.graph.edge(step_id, EdgeType.DEFAULT)
        if onward is None:
            step = self.graph.steps.get(step_id)
            kind = "start step" if step is not None and step.type == StepType.START else "join"
            return self._hold(f"{kind} {step_id} has no default edge", (step_id, reason, lane),
                              leave=True)
        return [(onward.to, reason, lane)]

    def _hold(self, reason: str, token: Token, leave: bool = False) -> list[Token]:
        """Hold the instance; `token`, which it stops, waits in the state for the resume."""
        self._keep(token, leave)
        self.hold(reason)
        return []

    def _keep(self, token: Token, leave: bool = False) -> None:
        step, reason, lane = token
        self.state.pending.append(Pending(step=step, reason=reason, lane=lane, leave=leave))

    def _retry(self, held: list[Pending]) -> None:
        """At a resume: retry the tokens a routing hold stopped, in order, as they were.

        Each goes through the usual entering code, so ids and events are those it would have
        had; one that meets its problem again is kept again and holds the instance again.
        """
        s = self.state
        for p in held:
            if s.status in (COMPLETED, CANCELLED):
                break  # the instance ended (and dropped what was kept)
            tokens = ([(p["step"], p["reason"], p["lane"])] if not p["leave"]
                      else self._leave(p["step"], p["reason"], p["lane"]))
            for token in tokens:
                self.enter(*token)

    # --- completions and control -------------------------------------------------------------

    def complete(self, c: StepCompletion) -> Decision:
        assert self.graph is not None
        s = self.state
        if s.status == ON_HOLD and self._from_child(c):
            return self.defer(c)
        if s.status != RUNNING:
            return self.reject(RejectReason.INSTANCE_NOT_RUNNING,
                               f"instance {s.instance_id} is {s.status}", c.step)
        if c.step not in s.active:
            where = ", ".join(sorted(s.active)) or "no step"
            return self.reject(RejectReason.STALE,
                               f"instance is not at {c.step} (it is at {where})", c.step)
        visit = s.active[c.step]
        if c.visit is not None and c.visit != visit:
            return self.reject(RejectReason.STALE,
                               f"{c.step} is at visit {visit}, not {c.visit}", c.step)
        step = self.graph.steps[c.step]
        chosen = self._choose(step, c)
        if isinstance(chosen, Hold):
            self.hold(chosen.reason)
            return self.done()
        if chosen is None:
            return self._no_edge(step, c)
        self._follow(c, chosen)
        return self.done()

    def _follow(self, c: StepCompletion, edge: Edge) -> None:
        """Leave the completed step along `edge` (the completion passed every check)."""
        s = self.state
        visit = s.active.pop(c.step)
        lane = s.lanes.pop(c.step, None)
        s.operators.setdefault(c.step, []).append(c.operator or c.equipment)
        self.event(InstanceEventKind.STEP_COMPLETED, step=c.step, visit=visit,
                   outcome=c.outcome, operator=c.operator or c.equipment,
                   measurements=dict(c.measurements) or None)
        self.enter(edge.to, reason=(c.outcome or "completed"), lane=lane)

    def _no_edge(self, step: Step, c: StepCompletion) -> Decision:
        assert self.graph is not None
        offered = ", ".join(self.graph.outcomes(step)) or "no named outcomes"
        return self.reject(RejectReason.NO_MATCHING_EDGE,
                           f"{c.step} has no edge for outcome {c.outcome!r} "
                           f"(accepts: {offered})", c.step)

    # --- a held parent's completions from its children (see the module docstring) -----------

    def _from_child(self, c: StepCompletion) -> bool:
        """Is `c` for an active subprocess step, at the visit it waits on (as a child sends)?"""
        assert self.graph is not None
        step = self.graph.steps.get(c.step)
        return (step is not None and step.type == StepType.SUBPROCESS
                and c.visit is not None and self.state.active.get(c.step) == c.visit)

    def defer(self, c: StepCompletion) -> Decision:
        """Keep a child's completion until the held parent resumes; nothing is routed or sent.

        Checked now as it would be if the instance ran, so what is kept will apply at the
        resume: the graph and the active steps do not change while held (migrate waits).
        """
        assert self.graph is not None
        s = self.state
        if any(d["event_id"] == self.event_id for d in s.deferred):
            return Decision(state=None, duplicate=True)  # a redelivery older than recent ids
        if (c.step, c.visit) in {_step_visit(d) for d in s.deferred}:
            return self.reject(RejectReason.STALE,
                               f"a completion of {c.step} visit {c.visit} already waits for "
                               f"instance {s.instance_id} to resume", c.step)
        step = self.graph.steps[c.step]
        if not isinstance(self._choose(step, c), Edge):  # a subprocess step never holds
            return self._no_edge(step, c)
        s.deferred.append({"event_id": self.event_id, "completion": c.dump()})
        return self.done()

    def _apply_deferred(self) -> None:
        """Apply the deferred completions in arrival order, each as if it had just arrived.

        The events each causes name it as their source. A completion that ends or holds the
        instance again stops the rest: an end drops them, a hold keeps them for the next resume.
        """
        assert self.graph is not None
        s = self.state
        while s.deferred and s.status == RUNNING:
            kept = s.deferred.pop(0)
            c = StepCompletion.model_validate(kept["completion"])
            self.source, self.branch_ended = kept["event_id"], None
            edge = self._choose(self.graph.steps[c.step], c) if self._from_child(c) else None
            if isinstance(edge, Edge):
                self._follow(c, edge)
            else:  # cannot happen (see `defer`); if it does, an operator must look
                self.hold(f"the completion {kept['event_id']} deferred for {c.step} no longer "
                          "applies")
        self.source = self.event_id

    def _choose(self, step: Step, c: StepCompletion) -> Edge | Hold | None:
        """The edge a completion follows (DESIGN §4 "Outcomes")."""
        assert self.graph is not None
        outcome = (c.outcome or "").strip()
        if outcome:
            named = self.graph.named(step.id, outcome)
            if named is not None:
                return named
        if step.type == StepType.DECISION and step.decision_type in (
            DecisionType.MEASUREMENT, DecisionType.EXPRESSION
        ):
            s = self.state
            conditions = [e for e in self.graph.outgoing[step.id] if e.condition is not None]
            facts = Facts(context=s.context, outcome=c.outcome, visits=s.visits,
                          priority=s.priority)
            return choose_condition_edge(step, conditions, c.measurements, facts)
        folded = outcome.casefold()
        if step.type == StepType.SUBPROCESS:
            # The outcome is the child's terminal status: a named edge for it wins (above),
            # else `completed` follows the default edge and anything else the alternate one.
            ok = folded in ("", "completed")
            return self.graph.edge(step.id, EdgeType.DEFAULT if ok else EdgeType.ALTERNATE)
        if folded == "fail":
            return self.graph.edge(step.id, EdgeType.ALTERNATE)
        if step.type == StepType.DECISION:
            return self.graph.edge(step.id, EdgeType.DEFAULT) if folded == "pass" else None
        return self.graph.edge(step.id, EdgeType.DEFAULT)

    def migrate(self, c: ControlInstance, target: Graph | None) -> Decision:
        """Move the instance to another version when `schemas.migration` says it fits.

        Active steps keep their visit; a step whose id changed gets a command under its new
        id (the old one's task is retired by the `migrated` event). Inside parallel blocks the
        plan also checks the lanes and split visits, which are then renamed with the steps
        (parallel.rename); a step waiting on a child keeps its id (see schemas.migration).
        """
        assert self.graph is not None
        s = self.state
        if c.to_version is None or target is None:
            return self.reject(RejectReason.UNKNOWN_PROCESS,
                               f"process {s.process_key} v{c.to_version} is not known to "
                               "this router")
        if s.status not in (RUNNING, ON_HOLD):
            return self.reject(RejectReason.INSTANCE_NOT_RUNNING,
                               f"instance {s.instance_id} is {s.status}")
        if s.deferred:
            return self.reject(RejectReason.INVALID_TRANSITION,
                               "a child's completion waits for the resume: resume the "
                               "instance first")
        plan = plan_migration(s.active, s.visits, self.graph.version, target.version,
                              c.step_map, lanes=s.lanes, splits=s.splits)
        if not plan.ok:
            return self.reject(RejectReason.INVALID_TRANSITION,
                               "cannot migrate: " + "; ".join(plan.problems))
        renamed = {new for old, new in (c.step_map or {}).items() if old in s.active}
        from_version = s.version
        s.version, s.active, s.visits = target.version.version, dict(plan.active), \
            dict(plan.visits)
        s.operators = {(c.step_map or {}).get(k, k): v for k, v in s.operators.items()}
        parallel.rename(s, c.step_map or {})
        s.pending = [_renamed(p, c.step_map or {}) for p in s.pending]
        self.graph = target
        self.event(InstanceEventKind.MIGRATED, from_version=from_version,
                   visits=dict(s.visits), active_steps=sorted(s.active),
                   reason=c.reason or "; ".join(plan.notes) or None, operator=c.operator)
        for step_id in sorted(renamed):
            step = target.steps[step_id]
            self.commands.append(step_command(target, s, step, s.active[step_id], "migrated",
                                              self.now, self._wake_at(step)))
        return self.done()

    def control(self, c: ControlInstance) -> Decision:
        s = self.state
        if c.action == InstanceAction.CANCEL:
            if s.status in (COMPLETED, CANCELLED):
                return self.reject(RejectReason.INSTANCE_NOT_RUNNING,
                                   f"instance {s.instance_id} is already {s.status}")
            from_parent = c.parent is not None and c.parent.dump() == s.parent
            self.end(CANCELLED, "cancelled", InstanceEventKind.CANCELLED,
                     tell_parent=not from_parent, reason=c.reason, operator=c.operator)
        elif c.action == InstanceAction.HOLD:
            if s.status != RUNNING:
                return self.reject(RejectReason.INVALID_TRANSITION,
                                   f"cannot hold an instance that is {s.status}")
            self.hold(c.reason or "held by request")
        else:
            if s.status != ON_HOLD:
                return self.reject(RejectReason.INVALID_TRANSITION,
                                   f"cannot resume an instance that is {s.status}")
            held, s.pending = s.pending, []
            if c.drop_held and held:
                return self._resume_dropping(c, held)
            s.status, s.hold_reason = RUNNING, None
            self.event(InstanceEventKind.RESUMED, reason=c.reason, operator=c.operator,
                       status=RUNNING)
            self._apply_deferred()
            self._retry(held)
        return self.done()

    def _resume_dropping(self, c: ControlInstance, held: list[Pending]) -> Decision:
        """Resume without the tokens a routing hold kept: the instance goes on with what it has.

        `resumed` names the dropped steps (`dropped`, and in `reason` after the operator's own
        words). The deferred completions apply first, as at any resume. A dropped token on a
        parallel branch closes that branch as if it had ended at a `completed` terminal
        (parallel.end): e.g. when two branches reached X, the branch that found X active is
        closed and the one that entered X carries on; the join then fires once every other
        branch has arrived or ended, as always, never before. If every other branch already
        waits at the join, it fires now and routing goes on from it. Refusing instead would
        leave the operator only migrate or cancel for a hold no migration can fix (X stays
        active), and keeping the branch open would leave the join waiting forever.

        Refused (`invalid_transition`, nothing changes) when dropping would leave the running
        instance waiting on no step at all: nothing could ever complete it, so the operator
        must migrate it to a version that routes the token, or cancel it.
        """
        s = self.state
        s.status, s.hold_reason = RUNNING, None
        steps = [p["step"] for p in held]
        note = "dropped held " + ", ".join(_described(p) for p in held)
        self.event(InstanceEventKind.RESUMED, operator=c.operator, status=RUNNING,
                   reason=f"{c.reason}; {note}" if c.reason else note, dropped=steps)
        self._apply_deferred()
        for p in held:
            if s.status in (COMPLETED, CANCELLED):
                break
            self.branch_ended = None
            for token in self._fired(parallel.end(s, p["lane"])):
                self.enter(*token)
        if s.status == RUNNING and not s.active and not s.pending:
            return self.reject(RejectReason.INVALID_TRANSITION,
                               f"dropping the held step(s) {', '.join(steps)} would leave "
                               f"instance {s.instance_id} waiting on no step: migrate it to a "
                               "version that routes them, then resume, or cancel it")
        return self.done()


def _renamed(p: Pending, step_map: dict[str, str]) -> Pending:
    """A held token carried over to the steps a migration's `step_map` renames."""
    def step(s: str) -> str:
        return step_map.get(s, s)

    lane = p["lane"]
    if lane is not None:
        split, visit = lane["split"].rsplit("/", 1)
        lane = Lane(split=f"{step(split)}/{visit}", branch=step(lane["branch"]))
    return Pending(step=step(p["step"]), reason=p["reason"], lane=lane, leave=p["leave"])


def _described(p: Pending) -> str:
    """A dropped token, for the `resumed` reason: its step and, if any, the branch it closed."""
    lane = p["lane"]
    where = "" if lane is None else f" (branch {lane['branch']} of {lane['split']} closed)"
    return f"{p['step']}{where}"


def _step_visit(d: Deferred) -> tuple[str, int | None]:
    """The step and visit a deferred completion completes."""
    return d["completion"]["step"], d["completion"].get("visit")

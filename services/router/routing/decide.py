"""`decide(graph, state, message, event_id, now) -> Decision`: all of Flowline's routing.

Pure: no I/O, no clock, no randomness. The shell passes in the process version, the stored state,
the decoded message, its CloudEvent id and its event time, and then stores and sends what comes
back. The same inputs always give the same Decision, so a replay after a crash re-emits
byte-identical commands (consumers dedupe them by `command_id`).

Semantics (DESIGN.md §4): entering a step increments its visit count; before entering T, if
`visits[T] >= T.max_visits`, T's escalation edge is followed instead (checked again at the
target). Start steps pass through; terminal steps end the instance; every other step waits.
"""

from __future__ import annotations

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
    ProcessRef,
    RejectReason,
    StartInstance,
    StepCommand,
    StepCompletion,
    Subject,
)
from services.router.routing.conditions import Hold, choose_condition_edge
from services.router.routing.graph import Graph
from services.router.routing.state import (
    CANCELLED,
    COMPLETED,
    ON_HOLD,
    RUNNING,
    InstanceState,
)

Message = StartInstance | StepCompletion | ControlInstance
_WAITING = {StepType.TASK, StepType.DECISION, StepType.REWORK, StepType.AUTOMATED, StepType.TIMER}


@dataclass(frozen=True)
class Rejection:
    reason: RejectReason
    detail: str


@dataclass
class Decision:
    """What to do: store `state` (when not None), send `commands` and `events`."""

    state: InstanceState | None
    commands: list[StepCommand] = field(default_factory=list)
    events: list[InstanceEvent] = field(default_factory=list)
    rejection: Rejection | None = None
    duplicate: bool = False


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
) -> Decision:
    if state is not None and event_id in state.recent_event_ids:
        return Decision(state=None, duplicate=True)
    if isinstance(message, StartInstance):
        return _start(graph, state, message, event_id, now)
    if state is None:
        return _reject_unknown(message, event_id, now)
    if graph is None:
        return _Run(None, state, event_id, now).reject(
            RejectReason.UNKNOWN_PROCESS,
            f"process {state.process_key} v{state.version} is not known to this router",
        )
    run = _Run(graph, state.copy(), event_id, now)
    if isinstance(message, StepCompletion):
        return run.complete(message)
    return run.control(message)


def _start(
    graph: Graph | None, state: InstanceState | None, msg: StartInstance, event_id: str,
    now: datetime,
) -> Decision:
    if graph is None:
        wanted = f"v{msg.version}" if msg.version is not None else "an approved version"
        return _rejected(RejectReason.UNKNOWN_PROCESS,
                         f"process {msg.tenant}/{msg.process} has no {wanted}")
    if graph.version.status != "approved":
        return _rejected(
            RejectReason.PROCESS_NOT_ACTIVE,
            f"process {msg.process} v{graph.version.version} is {graph.version.status}",
        )
    if state is not None:
        return _rejected(RejectReason.INSTANCE_EXISTS, f"instance {msg.instance_id} exists")
    if graph.start is None:
        return _rejected(RejectReason.UNKNOWN_PROCESS, f"process {msg.process} has no start")
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
    )
    run = _Run(graph, new, event_id, now)
    run.event(InstanceEventKind.STARTED, status=RUNNING)
    run.enter(graph.start, reason="started")
    return run.done()


def _rejected(reason: RejectReason, detail: str) -> Decision:
    return Decision(state=None, rejection=Rejection(reason, detail))


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

    # --- outputs -----------------------------------------------------------------------------

    def done(self) -> Decision:
        self.state.updated_at = self.at
        self.state.remember(self.event_id)
        return Decision(self.state, self.commands, self.events)

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
            process=ProcessRef(key=s.process_key, version=s.version), at=self.at,
            subject=Subject(**s.subject) if s.subject else None, work_order=s.work_order,
            source_event_id=self.event_id, **fields,
        )

    def hold(self, reason: str) -> None:
        self.state.status = ON_HOLD
        self.state.hold_reason = reason
        self.event(InstanceEventKind.HELD, reason=reason, status=ON_HOLD)

    # --- routing -----------------------------------------------------------------------------

    def enter(self, target: str, reason: str) -> None:
        """Enter `target`, following escalations and passing through start steps."""
        assert self.graph is not None
        s = self.state
        for _ in range(4 * len(self.graph.steps) + 4):  # a malformed graph cannot spin forever
            step = self.graph.steps.get(target)
            if step is None:
                return self.hold(f"edge leads to unknown step {target!r}")
            visits = s.visits.get(target, 0)
            if step.max_visits is not None and visits >= step.max_visits:
                escalation = self.graph.edge(target, EdgeType.ESCALATION)
                if escalation is None:
                    return self.hold(f"{target} reached max_visits={step.max_visits} "
                                     "and has no escalation edge")
                self.event(InstanceEventKind.ESCALATED, step=target, to_step=escalation.to,
                           visits=dict(s.visits), reason=f"max_visits={step.max_visits}")
                target, reason = escalation.to, "escalated"
                continue
            s.visits[target] = visit = visits + 1
            self.event(InstanceEventKind.STEP_ENTERED, step=target, step_type=step.type.value,
                       visit=visit, visits=dict(s.visits), reason=reason)
            if step.type == StepType.START:
                onward = self.graph.edge(target, EdgeType.DEFAULT)
                self.event(InstanceEventKind.STEP_COMPLETED, step=target, visit=visit)
                if onward is None:
                    return self.hold(f"start step {target} has no default edge")
                target, reason = onward.to, "started"
                continue
            if step.type == StepType.TERMINAL:
                s.status, s.terminal_status = COMPLETED, (step.terminal_status or "completed")
                s.active.clear()
                self.event(InstanceEventKind.COMPLETED, step=target, visit=visit,
                           terminal_status=s.terminal_status, status=COMPLETED)
                return None
            if step.type not in _WAITING:
                return self.hold(f"step type {step.type.value} ({target}) is not routed yet")
            s.active[target] = visit
            self.commands.append(self._command(step, visit, reason))
            return None
        return self.hold("routing did not settle: the graph loops through pass-through steps")

    def complete(self, c: StepCompletion) -> Decision:
        assert self.graph is not None
        s = self.state
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
            offered = ", ".join(self.graph.outcomes(step)) or "no named outcomes"
            return self.reject(RejectReason.NO_MATCHING_EDGE,
                               f"{c.step} has no edge for outcome {c.outcome!r} "
                               f"(accepts: {offered})", c.step)
        del s.active[c.step]
        s.operators.setdefault(c.step, []).append(c.operator or c.equipment)
        self.event(InstanceEventKind.STEP_COMPLETED, step=c.step, visit=visit,
                   outcome=c.outcome, operator=c.operator or c.equipment,
                   measurements=dict(c.measurements) or None)
        self.enter(chosen.to, reason=(c.outcome or "completed"))
        return self.done()

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
            conditions = [e for e in self.graph.outgoing[step.id] if e.condition is not None]
            return choose_condition_edge(step, conditions, c.measurements)
        folded = outcome.casefold()
        if folded == "fail":
            return self.graph.edge(step.id, EdgeType.ALTERNATE)
        if step.type == StepType.DECISION:
            return self.graph.edge(step.id, EdgeType.DEFAULT) if folded == "pass" else None
        return self.graph.edge(step.id, EdgeType.DEFAULT)

    def control(self, c: ControlInstance) -> Decision:
        s = self.state
        if c.action == InstanceAction.CANCEL:
            if s.status in (COMPLETED, CANCELLED):
                return self.reject(RejectReason.INSTANCE_NOT_RUNNING,
                                   f"instance {s.instance_id} is already {s.status}")
            s.status, s.terminal_status = CANCELLED, "cancelled"
            s.active.clear()
            self.event(InstanceEventKind.CANCELLED, reason=c.reason, operator=c.operator,
                       status=CANCELLED, terminal_status="cancelled")
        elif c.action == InstanceAction.HOLD:
            if s.status != RUNNING:
                return self.reject(RejectReason.INVALID_TRANSITION,
                                   f"cannot hold an instance that is {s.status}")
            self.hold(c.reason or "held by request")
        else:
            if s.status != ON_HOLD:
                return self.reject(RejectReason.INVALID_TRANSITION,
                                   f"cannot resume an instance that is {s.status}")
            s.status, s.hold_reason = RUNNING, None
            self.event(InstanceEventKind.RESUMED, reason=c.reason, operator=c.operator,
                       status=RUNNING)
        return self.done()

    def _command(self, step: Step, visit: int, reason: str) -> StepCommand:
        assert self.graph is not None
        s = self.state
        revisit_role = visit > 1 and step.revisit_assignment.value == "role" and step.revisit_role
        return StepCommand(
            command_id=f"{s.instance_id}/{step.id}/{visit}",
            instance_id=s.instance_id,
            tenant=s.tenant,
            process=ProcessRef(key=s.process_key, version=s.version),
            step=step.id,
            step_type=step.type.value,
            step_name=step.name,
            visit=visit,
            visits=dict(s.visits),
            role=step.revisit_role if revisit_role else step.role,
            escalate_to=step.escalate_to,
            revisit_assignment=step.revisit_assignment.value,
            revisit_role=step.revisit_role,
            previous_operators=[op for op in s.operators.get(step.id, []) if op],
            instructions=step.instructions,
            decision_type=step.decision_type.value if step.decision_type else None,
            outcomes=self.graph.outcomes(step),
            priority=s.priority,
            subject=Subject(**s.subject) if s.subject else None,
            work_order=s.work_order,
            reason=reason,
            entered_at=self.at,
            due_at=self._due(step),
            timer=step.timer,
            action=step.action,
            context=s.context,
        )

    def _due(self, step: Step) -> str | None:
        """SLA for the instance's priority × the step's weight (seed 001), when both exist."""
        assert self.graph is not None
        slas = self.graph.version.slas
        sla = getattr(slas, self.state.priority, None) if slas else None
        if sla is None or step.weight is None:
            return None
        try:
            return (self.now + parse_duration(sla) * step.weight).isoformat()
        except ValueError:
            return None  # validation reports a bad SLA; routing does not stop for it

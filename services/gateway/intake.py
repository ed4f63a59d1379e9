"""What the gateway writes to Kafka: instance requests and step completions.

Request bodies are strict (unknown fields are a 422, so a typo never silently drops data);
the messages built from them are the wire models of `schemas.messages`.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.messages import (
    ControlInstance,
    InstanceAction,
    Priority,
    StartInstance,
    StepCompletion,
    Subject,
)
from schemas.topics import CANCEL_V1, COMPLETED_V1, HOLD_V1, MIGRATE_V1, RESUME_V1, START_V1
from services.common.errors import Invalid
from services.common.kafka import EventProducer
from services.gateway import metrics
from services.gateway.proxy import Unavailable

CONTROL_TYPES = {
    InstanceAction.CANCEL: CANCEL_V1,
    InstanceAction.HOLD: HOLD_V1,
    InstanceAction.RESUME: RESUME_V1,
    InstanceAction.MIGRATE: MIGRATE_V1,  # with a target version: see services/gateway/migrate.py
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StartBody(_Body):
    process: str = Field(min_length=1)
    version: int | None = Field(default=None, ge=1)
    instance_id: str | None = Field(default=None, min_length=1, max_length=200)
    subject: Subject
    work_order: str | None = None
    priority: Priority = Priority.MEDIUM
    context: dict[str, Any] = Field(default_factory=dict)


class CompletionBody(_Body):
    step: str = Field(min_length=1)
    visit: int | None = Field(default=None, ge=1)
    outcome: str | None = None
    measurements: dict[str, Any] = Field(default_factory=dict)
    operator: str | None = None
    equipment: str | None = None
    note: str | None = None
    event_id: str | None = Field(default=None, min_length=1, max_length=400)


class ControlBody(_Body):
    reason: str | None = None
    operator: str | None = None


class ResumeBody(ControlBody):
    """`drop_held`: drop the steps a routing hold kept instead of retrying them (see
    `schemas.messages.ControlInstance`)."""

    drop_held: bool = False


def _invalid(exc: ValidationError) -> Invalid:
    details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return Invalid("request body is invalid", code="invalid_request", details=details)


class Intake:
    """Builds the wire messages and produces them, keyed by instance id."""

    def __init__(self, producer: EventProducer) -> None:
        self.producer = producer
        self.settings = producer.settings

    async def start(self, body: StartBody, tenant: str) -> dict[str, str]:
        fields = body.model_dump(exclude_none=True)
        fields.setdefault("instance_id", str(uuid.uuid4()))
        try:
            msg = StartInstance(**fields, tenant=tenant)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        event_id = await self._send(self.settings.requests_topic, msg.instance_id, START_V1,
                                    msg.dump())
        return {"instance_id": msg.instance_id, "event_id": event_id}

    async def complete(self, instance_id: str, body: CompletionBody) -> dict[str, str]:
        fields = body.model_dump(exclude_none=True, exclude={"event_id"})
        try:
            msg = StepCompletion(instance_id=instance_id, **fields)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        event_id = await self._send(self.settings.completions_topic, instance_id, COMPLETED_V1,
                                    msg.dump(), event_id=body.event_id)
        return {"instance_id": instance_id, "event_id": event_id}

    async def control(self, instance_id: str, action: InstanceAction,
                      body: ControlBody) -> dict[str, str]:
        try:
            msg = ControlInstance(instance_id=instance_id, action=action,
                                  **body.model_dump(exclude_none=True))
        except ValidationError as exc:
            raise _invalid(exc) from exc
        event_id = await self._send(self.settings.requests_topic, instance_id,
                                    CONTROL_TYPES[action], msg.dump())
        return {"instance_id": instance_id, "action": action.value, "event_id": event_id}

    async def _send(self, topic: str, key: str, ce_type: str, data: dict[str, Any],
                    event_id: str | None = None) -> str:
        try:
            sent = await self.producer.send(topic, key, ce_type, data, event_id=event_id)
        except Exception as exc:  # aiokafka raises many types; all mean "not written"
            raise Unavailable(f"the event broker did not take the request: {exc}",
                              details={"topic": topic}) from exc
        metrics.PRODUCED.labels(ce_type).inc()
        return sent

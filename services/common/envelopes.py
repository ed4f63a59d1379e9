"""CloudEvents over Kafka, through the `cloudevents` SDK: emit binary mode, accept both modes."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from schemas.envelope import DATA_CONTENT_TYPE
from schemas.topics import SOURCE

_FORMAT = JSONFormat()


class MalformedRecord(ValueError):
    """The record is not a CloudEvent with JSON object data; permanent: dead-letter it."""


@dataclass(frozen=True)
class Decoded:
    id: str
    type: str
    source: str
    time: datetime
    subject: str | None
    data: dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


def encode(
    ce_type: str,
    data: dict[str, Any],
    *,
    service: str,
    key: str | None = None,
    event_id: str | None = None,
    subject: str | None = None,
    time: datetime | None = None,
) -> tuple[list[tuple[str, bytes]], bytes]:
    """Build a binary-mode record: (headers, value)."""
    attributes: dict[str, Any] = {
        "id": event_id or new_id(),
        "source": f"{SOURCE}/{service}",
        "type": ce_type,
        "time": time or utcnow(),
        "datacontenttype": DATA_CONTENT_TYPE,
    }
    if subject:
        attributes["subject"] = subject
    message = to_binary(CloudEvent(attributes=attributes, data=data), _FORMAT)
    return list(message.headers.items()), message.value


def decode(
    headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | dict[str, bytes] | None,
    key: bytes | str | None,
    value: bytes | None,
    record_time: datetime | None = None,
) -> Decoded:
    """Parse a record in binary or structured mode; raise MalformedRecord with the why.

    An event without `time` takes the record's timestamp, so a replay decides the same way.
    """
    if value is None:
        raise MalformedRecord("record has no value")
    hdrs = dict(headers.items() if isinstance(headers, dict) else (headers or ()))
    hdrs = {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in hdrs.items()}
    # The SDK fills in a missing id (a random UUID) and time ("now"). Either would break what
    # the engine promises: ce_id is the idempotency key, and a replay must decide the same way.
    # So look at what the sender actually wrote before the SDK does.
    written = _attributes_written(hdrs, value)
    missing = [a for a in ("id", "source", "type", "specversion") if a not in written]
    if missing:
        raise MalformedRecord(f"CloudEvent lacks required attribute(s): {', '.join(missing)}")
    try:
        event = from_kafka(KafkaMessage(headers=hdrs, key=key, value=value), _FORMAT)
    except Exception as exc:  # the SDK raises several types; all mean "not a CloudEvent"
        raise MalformedRecord(f"not a CloudEvent: {type(exc).__name__}: {exc}") from exc
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise MalformedRecord(f"data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedRecord(f"data must be a JSON object, got {type(data).__name__}")
    time = (event.get_time() if "time" in written else None) or record_time or utcnow()
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return Decoded(
        id=str(event.get_id()),
        type=str(event.get_type()),
        source=str(event.get_source()),
        time=time,
        subject=event.get_subject(),
        data=data,
    )


def _attributes_written(headers: dict[str, bytes], value: bytes) -> set[str]:
    """The CloudEvents attributes present in the record itself, binary or structured mode."""
    if any(k.startswith("ce_") for k in headers):
        return {k[3:] for k in headers if k.startswith("ce_")}
    try:
        envelope = json.loads(value)
    except ValueError as exc:
        raise MalformedRecord(f"not a CloudEvent: neither ce_* headers nor JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise MalformedRecord("not a CloudEvent: structured mode needs a JSON object")
    return set(envelope)


def text_or_base64(value: bytes | None) -> tuple[str | None, str]:
    """Keep a rejected value whole: as text when it is UTF-8, else base64."""
    if value is None:
        return None, "utf-8"
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"

"""CloudEvents over Kafka: emit binary mode, accept both modes.

The hot path (every record the router reads and writes) is hand-written: the `cloudevents` SDK
cost ~65 µs per decode and ~23 µs per encode (bench/results/NOTES.md), mostly validation and
object building Flowline does not need for its own, well-formed records. The fast path
produces the SDK's headers, byte for byte, and the same JSON value (compact, UTF-8, written by
orjson: `jsonio.dumps`), and decodes to the identical result; anything outside the shape it
knows (structured mode, extension attributes, odd time formats, non-JSON content types, any
invalid input) goes through the SDK, which also words the errors. Both paths refuse what is not
JSON although Python's `json` reads it: `NaN`, `Infinity`, `-Infinity` (`jsonio` says why).
`tests/contract/test_codec*.py` proves these claims over many samples.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from schemas.envelope import DATA_CONTENT_TYPE, SPEC_VERSION
from schemas.topics import SOURCE
from services.common import jsonio

_FORMAT = JSONFormat()
_CONTENT_TYPE = DATA_CONTENT_TYPE.encode()
_SPEC_VERSION = SPEC_VERSION.encode()
Headers = list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...] | dict[str, bytes] | None


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


def _data_default(o: Any) -> Any:
    """The SDK's data encoding of what JSON has no type for: datetimes as RFC 3339 with `Z`."""
    if isinstance(o, datetime):
        return _rfc3339(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _rfc3339(when: datetime) -> str:
    text = when.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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
    """Build a binary-mode record: (headers, value), exactly as the SDK's `to_binary` would."""
    event_id = event_id or new_id()
    when = time or utcnow()
    if type(data) is not dict or not _fast(ce_type, event_id, subject, when):
        # The SDK rejects these (or, for non-dict data, encodes them its own way).
        return _encode_sdk(ce_type, data, service, event_id, subject, when)
    return _headers(ce_type, service, event_id, subject, when), jsonio.dumps(data, _data_default)


def encode_json(ce_type: str, value: bytes, *, service: str, event_id: str,
                subject: str | None = None, time: datetime | None = None,
                ) -> tuple[list[tuple[str, bytes]], bytes]:
    """`encode` for data already written as a JSON object (a message's `dump_json()`): the
    same record, without building the data as a dict first."""
    when = time or utcnow()
    if not _fast(ce_type, event_id, subject, when):
        return encode(ce_type, jsonio.loads(value), service=service, event_id=event_id,
                      subject=subject, time=when)
    return _headers(ce_type, service, event_id, subject, when), value


def _fast(ce_type: Any, event_id: Any, subject: Any, when: datetime) -> bool:
    """Whether the hand-written path writes these attributes (else the SDK does, or says why
    it cannot)."""
    return bool(ce_type and type(ce_type) is str and type(event_id) is str
                and when.tzinfo is not None and (not subject or type(subject) is str))


def _headers(ce_type: str, service: str, event_id: str, subject: str | None,
             when: datetime) -> list[tuple[str, bytes]]:
    # Attribute order is the SDK's: id, source, type, time, datacontenttype, subject, then
    # the specversion it adds itself.
    headers = [("ce_id", event_id.encode()), ("ce_source", f"{SOURCE}/{service}".encode()),
               ("ce_type", ce_type.encode()), ("ce_time", _rfc3339(when).encode()),
               ("content-type", _CONTENT_TYPE)]
    if subject:
        headers.append(("ce_subject", subject.encode()))
    headers.append(("ce_specversion", _SPEC_VERSION))
    return headers


def _encode_sdk(ce_type: str, data: Any, service: str, event_id: str, subject: str | None,
                when: datetime) -> tuple[list[tuple[str, bytes]], bytes]:
    attributes: dict[str, Any] = {
        "id": event_id,
        "source": f"{SOURCE}/{service}",
        "type": ce_type,
        "time": when,
        "datacontenttype": DATA_CONTENT_TYPE,
    }
    if subject:
        attributes["subject"] = subject
    message = to_binary(CloudEvent(attributes=attributes, data=data), _FORMAT)
    return list(message.headers.items()), message.value


def decode(
    headers: Headers,
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
    fast = _decode_fast(hdrs, key, value, record_time)
    return fast if fast is not None else _decode_sdk(hdrs, key, value, record_time)


# What the fast path reads: binary mode with these headers only (any other header that does
# not look like a CloudEvents one is ignored, as the SDK ignores it).
_BINARY = frozenset({"ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time",
                     "ce_subject", "content-type"})
# The time shapes `datetime.fromisoformat` and the SDK's `dateutil` parser read alike.
_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
_JSON_TYPES = re.compile(JSONFormat.JSON_CONTENT_TYPE_PATTERN.pattern)


def _decode_fast(hdrs: dict[str, bytes], key: bytes | str | None, value: bytes,
                 record_time: datetime | None) -> Decoded | None:
    """The common case, or None when the SDK must look (it then also says what is wrong)."""
    for name, raw in hdrs.items():
        if name not in _BINARY:
            if not isinstance(name, str):
                return None
            lowered = name.lower()
            if lowered.startswith("ce_") or lowered == "content-type":
                return None
            try:
                raw.decode()  # the SDK decodes every header, and fails on one that is not UTF-8
            except ValueError:
                return None
    if hdrs.get("ce_specversion") != _SPEC_VERSION:
        return None
    try:
        event_id = hdrs["ce_id"].decode()
        source = hdrs["ce_source"].decode()
        ce_type = hdrs["ce_type"].decode()
        if isinstance(key, bytes):
            key.decode()  # the SDK reads the key as the `partitionkey` attribute
        subject = hdrs["ce_subject"].decode() if "ce_subject" in hdrs else None
        content_type = hdrs["content-type"].decode() if "content-type" in hdrs else None
        stamp = hdrs.get("ce_time")
        when = None
        if stamp is not None:
            if not _TIME.fullmatch(stamp):
                return None
            when = datetime.fromisoformat(stamp.decode())
        data = jsonio.loads(value)
    except (KeyError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if (not event_id or not source or not ce_type or subject == "" or content_type == ""
            or (content_type is not None and not _JSON_TYPES.match(content_type))
            or type(data) is not dict):
        return None
    return Decoded(id=event_id, type=ce_type, source=source,
                   time=when or _fallback_time(record_time), subject=subject, data=data)


def _fallback_time(record_time: datetime | None) -> datetime:
    time = record_time or utcnow()
    return time if time.tzinfo is not None else time.replace(tzinfo=UTC)


def _decode_sdk(hdrs: dict[str, bytes], key: bytes | str | None, value: bytes,
                record_time: datetime | None) -> Decoded:
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
            data = jsonio.loads_finite(data)
        except ValueError as exc:
            raise MalformedRecord(f"data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedRecord(f"data must be a JSON object, got {type(data).__name__}")
    where = jsonio.non_finite(data)  # structured mode: the SDK read the envelope with `json`
    if where is not None:
        raise MalformedRecord(f"data is not JSON: {where} is NaN or infinite")
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

"""The hand-written CloudEvents codec is the `cloudevents` SDK's.

`services.common.envelopes` encodes and decodes Flowline's own records without the SDK (it was
a third of the router's CPU). Integrators program against what the SDK path wrote, so:

- `encode` gives the same headers, in the same order, as the SDK's `to_binary`, and a value
  that is the same JSON (written compact, UTF-8, by orjson), and raises where the SDK raises;
- `decode` gives the same result as the SDK path (the previous implementation, kept verbatim
  below as the reference, with one rule added: `NaN` and infinities are not JSON) or raises
  `MalformedRecord` with the same message — for well-formed records and for every kind of
  damage the samples can do to one.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dateutil import tz
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.topics import SOURCE
from services.common import jsonio
from services.common.envelopes import Decoded, MalformedRecord, decode, encode, encode_json

FORMAT = JSONFormat()
RUNS = settings(max_examples=400, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def sdk_encode(ce_type: str, data: Any, *, service: str, event_id: str,
               subject: str | None, time: datetime) -> tuple[list[tuple[str, bytes]], bytes]:
    """What `encode` did through the SDK before the fast path existed."""
    attributes: dict[str, Any] = {"id": event_id, "source": f"{SOURCE}/{service}",
                                  "type": ce_type, "time": time,
                                  "datacontenttype": "application/json"}
    if subject:
        attributes["subject"] = subject
    message = to_binary(CloudEvent(attributes=attributes, data=data), FORMAT)
    return list(message.headers.items()), message.value


def sdk_decode(headers: Any, key: Any, value: bytes | None,
               record_time: datetime | None) -> Decoded:
    """What `decode` did through the SDK before the fast path existed (verbatim, but for the
    two lines marked: NaN and infinities, which `json` reads, are refused as not JSON)."""
    if value is None:
        raise MalformedRecord("record has no value")
    hdrs = dict(headers.items() if isinstance(headers, dict) else (headers or ()))
    hdrs = {k: (v if isinstance(v, bytes) else str(v).encode()) for k, v in hdrs.items()}
    if any(k.startswith("ce_") for k in hdrs):
        written = {k[3:] for k in hdrs if k.startswith("ce_")}
    else:
        try:
            envelope = json.loads(value)
        except ValueError as exc:
            raise MalformedRecord(
                f"not a CloudEvent: neither ce_* headers nor JSON: {exc}") from exc
        if not isinstance(envelope, dict):
            raise MalformedRecord("not a CloudEvent: structured mode needs a JSON object")
        written = set(envelope)
    missing = [a for a in ("id", "source", "type", "specversion") if a not in written]
    if missing:
        raise MalformedRecord(f"CloudEvent lacks required attribute(s): {', '.join(missing)}")
    try:
        event = from_kafka(KafkaMessage(headers=hdrs, key=key, value=value), FORMAT)
    except Exception as exc:
        raise MalformedRecord(f"not a CloudEvent: {type(exc).__name__}: {exc}") from exc
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = jsonio.loads_finite(data)  # added: NaN and infinities refused
        except ValueError as exc:
            raise MalformedRecord(f"data is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedRecord(f"data must be a JSON object, got {type(data).__name__}")
    if (where := jsonio.non_finite(data)) is not None:  # added: the same, in structured mode
        raise MalformedRecord(f"data is not JSON: {where} is NaN or infinite")
    time = (event.get_time() if "time" in written else None) or record_time or datetime.now(UTC)
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return Decoded(id=str(event.get_id()), type=str(event.get_type()),
                   source=str(event.get_source()), time=time, subject=event.get_subject(),
                   data=data)


# --- samples ------------------------------------------------------------------------------

text = st.text(max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=True, allow_infinity=True) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
finite_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)
# What `encode` is given: finite numbers only (every way in refuses the others: see
# `test_encode_writes_a_nan_it_is_given_as_null` for what it does if one got through).
data_dicts = st.dictionaries(text, finite_values | st.datetimes(timezones=st.just(UTC)),
                             max_size=6)
zones = st.sampled_from([UTC, timezone(timedelta(0)), tz.tzutc(), timezone(timedelta(hours=2)),
                         timezone(timedelta(hours=-5, minutes=-30)), tz.tzoffset(None, 3600)])
aware_times = st.builds(lambda d, z: d.replace(tzinfo=z),
                        st.datetimes(min_value=datetime(1970, 1, 2),
                                     max_value=datetime(9999, 1, 1)),
                        zones)
times = aware_times | st.datetimes()  # naive ones: the SDK refuses them, so must encode
ids = st.sampled_from(["inst-1/inspect/2", "e5e1c7d0-9a1f-4c0e-8b7e-1a2b3c4d5e6f", "ü/ß/1"])


@RUNS
@given(ce_type=st.sampled_from(["flowline.step.command.v1", "flowline.instance.started.v1",
                                "", "x"]),
       data=data_dicts, service=st.sampled_from(["router", "tasks", "gätewäy"]), event_id=ids,
       subject=st.none() | st.sampled_from(["", "inst-1", "parça-7"]), time=times)
def test_encode_is_the_sdks_headers_and_json(ce_type: str, data: dict[str, Any], service: str,
                                            event_id: str, subject: str | None,
                                            time: datetime) -> None:
    try:
        expected = sdk_encode(ce_type, data, service=service, event_id=event_id,
                              subject=subject, time=time)
    except Exception as exc:  # whatever the SDK refuses, `encode` refuses the same way
        with pytest.raises(type(exc)):
            encode(ce_type, data, service=service, event_id=event_id, subject=subject,
                   time=time)
        return
    headers, value = encode(ce_type, data, service=service, event_id=event_id,
                            subject=subject, time=time)
    assert headers == expected[0]
    assert json.loads(value) == json.loads(expected[1])
    assert value == jsonio.dumps(json.loads(expected[1]))  # compact: no blanks, UTF-8


@RUNS
@given(ce_type=st.sampled_from(["flowline.step.command.v1", "", "x"]), data=data_dicts,
       service=st.sampled_from(["router", "gätewäy"]), event_id=ids,
       subject=st.none() | st.sampled_from(["", "inst-1", "parça-7"]), time=times)
def test_encode_json_makes_the_record_encode_makes(ce_type: str, data: dict[str, Any],
                                                  service: str, event_id: str,
                                                  subject: str | None, time: datetime) -> None:
    """The router's messages come written as JSON already (`dump_json`): `encode_json` gives
    them `encode`'s headers and keeps the value; what `encode` refuses, it refuses."""
    written = jsonio.dumps(data, lambda o: o.isoformat())
    try:
        expected = encode(ce_type, data, service=service, event_id=event_id, subject=subject,
                          time=time)
    except Exception as exc:
        with pytest.raises(type(exc)):
            encode_json(ce_type, written, service=service, event_id=event_id,
                        subject=subject, time=time)
        return
    headers, value = encode_json(ce_type, expected[1], service=service, event_id=event_id,
                                 subject=subject, time=time)
    assert headers == expected[0]
    assert value == expected[1]


def test_encode_writes_a_nan_it_is_given_as_null() -> None:
    """Nothing hands `encode` a NaN (decode and the HTTP bodies refuse them); were one to get
    through, the record would still be JSON, which the SDK's `NaN` was not."""
    _, value = encode("flowline.step.command.v1", {"x": float("nan"), "y": [float("inf")]},
                      service="router", event_id="e", time=datetime(2026, 1, 2, tzinfo=UTC))
    assert value == b'{"x":null,"y":[null]}'


def test_encode_without_an_id_makes_one_up_and_is_otherwise_the_sdks() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    headers, value = encode("flowline.step.command.v1", {"a": [1, "ü"]}, service="router",
                            subject="i", time=when)
    assert headers[0][0] == "ce_id" and len(headers[0][1]) == 36
    sdk_headers, sdk_value = sdk_encode("flowline.step.command.v1", {"a": [1, "ü"]},
                                        service="router", event_id=headers[0][1].decode(),
                                        subject="i", time=when)
    assert headers == sdk_headers and json.loads(value) == json.loads(sdk_value)
    assert value == '{"a":[1,"ü"]}'.encode()


def _records() -> st.SearchStrategy[tuple[list[tuple[str, bytes]], Any, bytes]]:
    """Well-formed records from `encode`, then damaged in every way a sender might."""
    good = st.builds(
        lambda ce_type, data, eid, subject, time: encode(
            ce_type, data, service="bench", event_id=eid, subject=subject, time=time),
        st.sampled_from(["flowline.step.completed.v1", "flowline.instance.start.v1"]),
        st.dictionaries(text, json_values, max_size=4), st.sampled_from(["e1", "a/b/3", "ü"]),
        st.none() | st.just("inst-1"), aware_times)
    keys = st.sampled_from([b"inst-1", "inst-1", None, b"\xff\xfe", b""])
    return st.tuples(good, keys).flatmap(
        lambda rec: st.tuples(_damaged_headers(rec[0][0]), st.just(rec[1]),
                              _damaged_value(rec[0][1])))


TIME_TEXTS = [b"2026-01-02T03:04:05Z", b"2026-01-02T03:04:05.1Z", b"2026-01-02T03:04:05.123+02:00",
              b"2026-01-02T03:04:05.123456-05:30", b"2026-01-02T03:04:05-00:00",
              b"2026-01-02T03:04:05", b"2026-01-02 03:04:05Z", b"20260102T030405Z",
              b"2026-13-02T03:04:05Z", b"2026-01-02T03:04:05.1234567Z", b"2026-01-02T03:04Z",
              b"2026-01-02T03:04:05+24:00", b"2026-01-02", b"yesterday", b"\xff"]


def _damaged_headers(headers: list[tuple[str, bytes]]) -> st.SearchStrategy[Any]:
    base = list(headers)
    names = [k for k, _ in base]
    edits = st.one_of(
        st.just(base),
        st.sampled_from(names).map(lambda n: [(k, v) for k, v in base if k != n]),
        st.tuples(st.sampled_from(names), st.sampled_from(
            [b"", b"\xff", b"0.3", b"1.0", b"x", b"text/plain", b"application/cloudevents+json",
             b"application/json; charset=utf-8", b"application/vnd.x+json"])).map(
            lambda kv: [(k, kv[1] if k == kv[0] else v) for k, v in base]),
        st.sampled_from(TIME_TEXTS).map(
            lambda t: [(k, t if k == "ce_time" else v) for k, v in base]),
        st.sampled_from([("traceparent", b"00-abc"), ("traceparent", b"\xff"),
                         ("ce_partitionkey", b"k"), ("ce_my_ext", b"x"), ("ce_ext1", b"x"),
                         ("CE_ID", b"other"), ("Content-Type", b"text/plain"),
                         ("ce_id", b"dup-wins"), ("ce_dataschema", b"")]).map(
            lambda extra: [*base, extra]),
        st.just(dict(base)), st.just(tuple(base)), st.just(None), st.just([]),
        st.just([(k, v.decode("utf-8", "replace")) for k, v in base]),  # str header values
    )
    return edits


def _damaged_value(value: bytes) -> st.SearchStrategy[bytes | None]:
    return st.sampled_from([value, value, b"", None, b"[1, 2]", b'"{\\"a\\": 1}"', b"{",
                            b"\xff\xfe{}", b"null", b'{"a": NaN}', value + b" ",
                            "\ufeff".encode() + value])


@RUNS
@given(record=_records(), record_time=st.none() | aware_times | st.datetimes())
def test_decode_is_the_sdks(record: tuple[Any, Any, bytes | None],
                            record_time: datetime | None) -> None:
    headers, key, value = record
    record_time = record_time or datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)  # no "now" here
    try:
        expected: Decoded | str = sdk_decode(headers, key, value, record_time)
    except MalformedRecord as exc:
        expected = str(exc)
    try:
        got: Decoded | str = decode(headers, key, value, record_time)
    except MalformedRecord as exc:
        got = str(exc)
    if isinstance(expected, str) or isinstance(got, str):
        assert got == expected
        return
    assert got == expected
    # Equal instants are not enough: what the router writes from `time` must match too.
    assert got.time.isoformat() == expected.time.isoformat()
    assert got.time.utcoffset() == expected.time.utcoffset()


def test_the_fast_path_is_taken_for_flowline_records() -> None:
    """Guard against a codec that is identical only because it always asks the SDK."""
    import services.common.envelopes as envelopes

    headers, value = encode("flowline.step.completed.v1", {"instance_id": "i", "step": "s"},
                            service="gateway", event_id="e1", subject="i",
                            time=datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC))
    hdrs = dict(headers)
    assert envelopes._decode_fast(hdrs, b"i", value, None) == decode(headers, b"i", value)
    assert sdk_decode(headers, b"i", value, None) == decode(headers, b"i", value)


def test_nan_and_infinities_are_refused_on_both_paths() -> None:
    """Python's json reads them, JSON has no such numbers: both paths say the record is not."""
    headers, _ = encode("flowline.step.completed.v1", {"instance_id": "i"}, service="mes",
                        event_id="e1", subject="i", time=datetime(2026, 1, 2, tzinfo=UTC))
    for value in (b'{"instance_id": "i", "measurements": {"torque": NaN}}',
                  b'{"instance_id": "i", "measurements": {"torque": -Infinity}}'):
        with pytest.raises(MalformedRecord, match=r"data is not JSON: .*(NaN|Infinity)"):
            decode(headers, b"i", value)
    structured = json.dumps({"specversion": "1.0", "id": "e2", "source": "mes", "type": "t",
                             "datacontenttype": "application/json",
                             "data": {"instance_id": "i", "torque": math.nan}}).encode()
    with pytest.raises(MalformedRecord, match="data is not JSON: torque is NaN or infinite"):
        decode([("content-type", b"application/cloudevents+json")], b"i", structured)


def test_integers_beyond_64_bits_stay_exact_on_the_fast_path() -> None:
    import services.common.envelopes as envelopes

    headers, value = encode("flowline.step.completed.v1", {"serial": 2**70, "n": 7},
                            service="mes", event_id="e1", time=datetime(2026, 1, 2, tzinfo=UTC))
    fast = envelopes._decode_fast(dict(headers), b"i", value, None)
    assert fast is not None and fast.data == {"serial": 2**70, "n": 7}

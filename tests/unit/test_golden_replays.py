"""Golden replays: committed histories through decode -> decide give the committed outputs.

A failure means routing now answers a recorded history differently. If that is intended, run
`python -m tests.golden.regenerate` and review the diff of `tests/golden/*/expected.jsonl`:
it is what integrators will see change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.golden.replay import EVENTS, EXPECTED, histories, read_jsonl, replay

HISTORIES = histories()


def test_the_required_histories_are_committed():
    assert {h.name for h in HISTORIES} >= {"reman_rework_to_scrap", "parallel_analysis",
                                           "subprocess_overhaul"}


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.name)
async def test_history_replays_to_the_committed_output(history: Path):
    expected = read_jsonl(history / EXPECTED)
    actual = await replay(history)
    assert [r["id"] for r in actual] == [r["id"] for r in expected], "records replayed"
    for got, want in zip(actual, expected, strict=True):
        assert got == want, (
            f"{history.name}: record {want['id']} now routes differently:\n"
            f"  expected {json.dumps(want, sort_keys=True)}\n"
            f"  got      {json.dumps(got, sort_keys=True)}\n"
            "run `python -m tests.golden.regenerate` if the change is intended")


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.name)
async def test_the_requests_the_router_sent_appear_in_the_history(history: Path):
    """A history holds what the router read, including what it sent to its own inputs."""
    recorded = [(r["key"], r["data"]) for r in read_jsonl(history / EVENTS)
                if r["id"].startswith("start:") or "/req/" in r["id"]]
    sent = [(q["instance_id"], q) for r in read_jsonl(history / EXPECTED)
            for q in r.get("requests", [])]
    assert recorded == sent


@pytest.mark.parametrize("history", HISTORIES, ids=lambda h: h.name)
async def test_every_message_routed_is_written_as_its_dump(history: Path):
    """The router writes its messages with `dump_json()` (pydantic's serializer, in one step);
    what the committed outputs hold, and integrators read, is `dump()`."""
    messages: list[Any] = []
    await replay(history, seen=messages.append)
    assert {type(m).__name__ for m in messages} >= {"StepCommand", "InstanceEvent"}
    for message in messages:
        assert json.loads(message.dump_json()) == message.dump(), type(message).__name__

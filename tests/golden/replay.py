"""Replay a committed history through the router's own decode path and `decide`.

A history (`tests/golden/<name>/events.jsonl`) is the records the router read, in order, one
JSON object a line: `topic` (`definitions`, `instance-requests` or `step-completions`), `key`,
the CloudEvent `id`, `type` and `time`, and its `data`. It includes the records the router sent
to its own inputs (a subprocess's start, a child's completion to its parent), as they appeared
there. Process versions come first, as `flowline.process.version.v1` records.

Each record is encoded as the Kafka binary-mode record a producer would send
(`services.common.envelopes.encode`) and read back the way the router reads it: definitions
through `DefinitionsView`, instance records through `Router._decide` (CloudEvent decode, type
table, action-from-type, key check, version resolution), then `decide`. States are stored as
dicts between records, as the changelog table stores them. The outcome per instance record is
one line of `expected.jsonl`: the commands, events and requests the decision produced, its
rejection, or the dead letter the decode path raised.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from services.common.envelopes import encode
from services.common.settings import Settings
from services.router.app import Batch, Rejected, Router
from services.router.definitions_view import DefinitionsView

GOLDEN = Path(__file__).parent
EVENTS, EXPECTED = "events.jsonl", "expected.jsonl"


def histories() -> list[Path]:
    return sorted(p.parent for p in GOLDEN.glob(f"*/{EVENTS}"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows),
                    encoding="utf-8")


async def replay(history: Path,
                 seen: Callable[[Any], None] = lambda _message: None) -> list[dict[str, Any]]:
    """The outcome of every instance record of `history`, in order; `seen` is shown every
    message a decision sends (command, instance event, request to the router itself)."""
    settings = Settings()
    topics = {"definitions": settings.definitions_topic,
              "instance-requests": settings.requests_topic,
              "step-completions": settings.completions_topic}
    view = DefinitionsView(settings.kafka_bootstrap, settings.definitions_topic,
                           settings.fetch_max_wait_ms)
    table: dict[str, dict[str, Any]] = {}
    router = Router(settings, None, table, view)  # type: ignore[arg-type]  # no faust app: no I/O
    out = []
    for offset, record in enumerate(read_jsonl(history / EVENTS)):
        headers, value = encode(record["type"], record["data"], service="golden",
                                event_id=record["id"],
                                time=datetime.fromisoformat(record["time"]))
        key = record["key"].encode()
        if record["topic"] == "definitions":
            view._apply(key, value, headers)
            continue
        msg = SimpleNamespace(topic=topics[record["topic"]], partition=0, offset=offset,
                              key=key, value=value, headers=headers, timestamp=None)
        try:
            decision, _ = await router._decide(msg, Batch())
        except Rejected as exc:
            out.append({"id": record["id"], "dead_letter": {"reason": exc.reason.value,
                                                            "detail": exc.detail}})
            continue
        if decision.state is not None:
            table[decision.state.instance_id] = decision.state.to_dict()
        for message in (*decision.commands, *decision.events, *decision.requests):
            seen(message)
        out.append({
            "id": record["id"],
            "duplicate": decision.duplicate,
            "commands": [c.dump() for c in decision.commands],
            "events": [e.dump() for e in decision.events],
            "requests": [r.dump() for r in decision.requests],
            "rejection": ({"reason": decision.rejection.reason.value,
                           "detail": decision.rejection.detail}
                          if decision.rejection else None),
        })
    return out

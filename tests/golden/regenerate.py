"""Rewrite every `tests/golden/<name>/expected.jsonl` from its history.

    python -m tests.golden.regenerate

Run it only when a routing change is intended, then review the diff of the expected files: it
is exactly what integrators will see change.
"""

from __future__ import annotations

import asyncio

from tests.golden.replay import EXPECTED, histories, replay, write_jsonl


def main() -> None:
    for history in histories():
        rows = asyncio.run(replay(history))
        write_jsonl(history / EXPECTED, rows)
        print(f"{history.name}: {len(rows)} records")


if __name__ == "__main__":
    main()

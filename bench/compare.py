"""`python -m bench.compare A.json B.json`: the target metrics side by side, with the change."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.targets import TARGETS, lookup


def _label(result: dict[str, Any], path: Path) -> str:
    meta = result["meta"]
    return f"{path.name} ({meta['broker']['kind']}, {meta['mode']}, {meta['machine']['commit']})"


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    rows = []
    for t in TARGETS:
        va, vb = lookup(a, t.path), lookup(b, t.path)
        if va is None and vb is None:
            continue
        change = ""
        if isinstance(va, int | float) and isinstance(vb, int | float) and va:
            pct = 100 * (vb - va) / abs(va)
            better = (pct > 0) == t.higher_is_better
            change = f"{pct:+.1f}% {'better' if better else 'worse'}" if abs(pct) >= 0.5 else "="
        rows.append((f"{t.label} ({t.unit})" if t.unit else t.label, va, vb, change))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = p.parse_args(argv)
    a, b = (json.loads(x.read_text()) for x in (args.a, args.b))
    print(f"A = {_label(a, args.a)}\nB = {_label(b, args.b)}\n")
    print("| metric | A | B | change |\n| --- | ---: | ---: | --- |")
    for label, va, vb, change in compare(a, b):
        print(f"| {label} | {'—' if va is None else va} | {'—' if vb is None else vb} | "
              f"{change} |")
    for name, r in (("A", a), ("B", b)):
        loaded = [s for s, v in r["scenarios"].items() if (v.get("cpu") or {}).get("under_load")]
        if loaded:
            print(f"\n{name}: under load (others used > 0.25 cores) in: {', '.join(loaded)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m bench.compare A.json B.json`: the target metrics side by side, with the change."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.calibrate import ratio
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


def speed(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The two machines' times for the fixed work, and how much slower B's was."""
    sa, sb = (r["meta"]["machine"].get("speed") or {} for r in (a, b))
    if not sa or not sb:
        return "\nMachine speed: not recorded in both (results from before bench/calibrate.py)."

    def at_start_and_end(figure: str) -> dict[str, list[Any]]:
        return {name: [(s.get(when) or {}).get(figure) for when in ("start", "end")]
                for name, s in (("A", sa), ("B", sb))}

    best, trips = at_start_and_end("best_ms"), at_start_and_end("loopback_us")
    b_over_a = ratio(sa.get("start"), sb.get("start"))
    how = "" if b_over_a is None else (
        f"; B's machine took {b_over_a:.2f}× A's time for it"
        + (": compare with care" if abs(b_over_a - 1) > 0.05 else ""))
    return (f"\nMachine speed (fixed Python work, ms at start / end; lower is quicker): "
            f"A {best['A'][0]} / {best['A'][1]}, B {best['B'][0]} / {best['B'][1]}{how}"
            f"\nLoopback round trip between two threads (µs at start / end): "
            f"A {trips['A'][0]} / {trips['A'][1]}, B {trips['B'][0]} / {trips['B'][1]}")


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
    print(speed(a, b))
    for name, r in (("A", a), ("B", b)):
        loaded = [s for s, v in r["scenarios"].items() if (v.get("cpu") or {}).get("under_load")]
        if loaded:
            print(f"\n{name}: under load (others used > 0.25 cores) in: {', '.join(loaded)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

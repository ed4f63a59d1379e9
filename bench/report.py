"""Results as JSON (everything) and a short markdown table (the targets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.targets import TARGETS, lookup, verdict


def summarise(result: dict[str, Any]) -> None:
    """Cross-scenario numbers: router / raw."""
    scenarios = result["scenarios"]
    router = (scenarios.get("throughput") or {}).get("per_second")
    raw = (scenarios.get("raw") or {}).get("per_second")
    result["summary"] = {"router_over_raw": round(router / raw, 3) if router and raw else None}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    m = meta["machine"]
    lines = [
        f"# Flowline bench {meta['started_at']} ({meta['mode']}, {meta['broker']['kind']}, "
        f"{meta.get('guarantee', 'at_least_once')})",
        "",
        f"`{meta['command']}` — commit {m['commit']}{' (dirty)' if m['dirty'] else ''}, "
        f"{m['nproc']} cores ({m['cpu_model']}), {m['memory_mb']} MB, Python {m['python']}, "
        f"faust {m['faust']}, aiokafka {m['aiokafka']}; broker: {meta['broker']['version']}; "
        f"load average at start {' / '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}",
        "",
        *_speed_line(m.get("speed")),
        "| metric | value | target | verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    for t in TARGETS:
        value = lookup(result, t.path)
        if value is None and (t.path[0] == "summary" or t.path[0] not in result["scenarios"]):
            continue
        target = "" if t.target is None else f"{'≥' if t.higher_is_better else '≤'} {t.target}"
        lines.append(f"| {t.label} | {_fmt(value)} {t.unit if value is not None else ''} | "
                     f"{target} | {verdict(t, value)} |")
    lines += ["", "| scenario | seconds | our CPU (cores) | others' CPU (cores) | "
              "load avg 1m at start | under load | machine before (ms / µs) |",
              "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    before = (m.get("speed") or {}).get("scenarios") or {}
    for name, sc in result["scenarios"].items():
        cpu = sc.get("cpu") or {}
        error = f" ERROR: {sc['error']}" if "error" in sc else ""
        lines.append(f"| {name}{error} | {_fmt(cpu.get('seconds'))} | "
                     f"{_fmt(cpu.get('cpu_cores_ours'))} | {_fmt(cpu.get('cpu_cores_others'))} | "
                     f"{_fmt(cpu.get('loadavg_1m_at_start'))} | "
                     f"{'**yes**' if cpu.get('under_load') else 'no'} | "
                     f"{_machine(before.get(name))} |")
    shares = [(name, sc["cpu"]) for name, sc in result["scenarios"].items()
              if (sc.get("cpu") or {}).get("cores_by_process")]
    if shares:
        lines += ["", "CPU by process (cores; `bench` is the load generator, in others' CPU; "
                  "a JVM's JIT compiler threads in brackets):", ""]
        lines += [f"- {name}: " + ", ".join(_share(p, c, cpu.get("jit_cores_by_process") or {})
                                            for p, c in cpu["cores_by_process"].items())
                  for name, cpu in shares]
    return "\n".join(lines) + "\n"


def _share(process: str, cores: float, jit: dict[str, float]) -> str:
    """`broker 0.50 (JIT 0.23)`: a broker started minutes ago is still compiling its code."""
    return f"{process} {cores:.2f}" + (f" (JIT {jit[process]:.2f})" if process in jit else "")


def _machine(speed: dict[str, Any] | None) -> str:
    """The fixed work's ms / the loopback round trip's µs, as measured before a scenario."""
    speed = speed or {}
    return f"{_fmt(speed.get('best_ms'))} / {_fmt(speed.get('loopback_us'))}"


def _speed_line(speed: dict[str, Any] | None) -> list[str]:
    """The machine's time for `bench.calibrate`'s fixed work (lower is quicker)."""
    if not speed:
        return []
    start, end = speed.get("start") or {}, speed.get("end") or {}
    return [f"Machine speed (`bench/calibrate.py`, best of {start.get('repeats', '?')}; lower "
            f"is quicker): fixed Python work {_fmt(start.get('best_ms'))} ms before the broker "
            f"started, {_fmt(end.get('best_ms'))} ms after it stopped; a loopback round trip "
            f"between two threads {_fmt(start.get('loopback_us'))} / "
            f"{_fmt(end.get('loopback_us'))} µs.", ""]


def write(result: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(result))
    return json_path, md_path

"""Machine facts recorded with every result, and a meter for CPU others use meanwhile."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
# More than this many cores used by processes that are not ours during a scenario marks its
# numbers as taken under load (the machine is shared with other engineers' test runs).
CONTENDED_CORES = 0.25


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=10, check=False)
        return out.stdout.strip()
    except OSError:
        return ""


def _meminfo_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def machine_info() -> dict[str, Any]:
    import aiokafka
    import faust

    return {
        "nproc": os.cpu_count(),
        "memory_mb": _meminfo_mb(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "faust": faust.__version__,
        "aiokafka": aiokafka.__version__,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "loadavg_at_start": list(os.getloadavg()),
    }


def _busy_ticks() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle


def process_ticks(pid: int) -> int:
    """utime + stime of `pid` (0 once it is gone)."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    except (OSError, IndexError):
        return 0


# A JVM compiles its hot code in threads named "C1 CompilerThread0", "C2 CompilerThread1", ...
# (Linux truncates a thread's name to 15 characters).
JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")


def jit_ticks(pid: int) -> int:
    """utime + stime of `pid`'s JIT compiler threads: a JVM still compiling (a broker started
    minutes ago) spends a share of the machine that a long-running one does not. 0 for a
    process without such threads, or once it is gone."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            if not Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith(JIT_THREADS):
                continue
            parts = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(parts[11]) + int(parts[12])
        except (OSError, IndexError):  # the thread ended meanwhile
            continue
    return total


def cpu_seconds(pid: int | None) -> float:
    """CPU seconds `pid` has used so far (0 without a process, or once it is gone)."""
    return process_ticks(pid) / TICKS if pid else 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class CpuMeter:
    """CPU (in cores) used by the whole machine, by our processes, and by everyone else.

    Call `track(pid)` for every process the scenario starts and `retire(pid)` just before one
    is killed, so its CPU is not booked to others.
    """

    started: float = field(default_factory=time.monotonic)
    busy0: int = field(default_factory=_busy_ticks)
    ours: dict[int, tuple[int, int]] = field(default_factory=dict)  # pid -> (first, last)
    names: dict[int, str] = field(default_factory=dict)  # pid -> what it is, when told
    load0: float = field(default_factory=lambda: os.getloadavg()[0])
    bench0: int = field(default_factory=lambda: process_ticks(os.getpid()))
    jit0: dict[int, int] = field(default_factory=dict)  # pid -> its JIT threads' first ticks

    def track(self, pid: int | None, name: str | None = None) -> None:
        """Book `pid`'s CPU to us from now on; a `name` lists it in `cores_by_process` too
        (and, for a JVM, its compiler threads' share in `jit_cores_by_process`)."""
        if pid and pid not in self.ours:
            t = process_ticks(pid)
            self.ours[pid] = (t, t)
        if pid and name:
            self.names[pid] = name
            self.jit0.setdefault(pid, jit_ticks(pid))

    def retire(self, pid: int | None) -> None:
        if pid in self.ours:
            first, _ = self.ours[pid]
            self.ours[pid] = (first, process_ticks(pid) or self.ours[pid][1])

    def report(self) -> dict[str, Any]:
        seconds = max(1e-6, time.monotonic() - self.started)
        for pid in self.ours:
            self.retire(pid)
        ours = sum(last - first for first, last in self.ours.values()) / TICKS / seconds
        total = (_busy_ticks() - self.busy0) / TICKS / seconds
        others = max(0.0, total - ours)
        # Per named process, and the bench's own (part of `others`: it is the load, not us).
        by_process = {"bench": (process_ticks(os.getpid()) - self.bench0) / TICKS / seconds}
        jit: dict[str, float] = {}
        for pid, name in self.names.items():
            first, last = self.ours[pid]
            by_process[name] = by_process.get(name, 0.0) + (last - first) / TICKS / seconds
            now = jit_ticks(pid)
            if now or self.jit0.get(pid):  # a JVM: it has compiler threads
                compiled = max(0, now - self.jit0.get(pid, 0))  # 0 once it is gone
                jit[name] = jit.get(name, 0.0) + compiled / TICKS / seconds
        return {
            "seconds": round(seconds, 1),
            "cpu_cores_total": round(total, 2),
            "cpu_cores_ours": round(ours, 2),
            "cpu_cores_others": round(others, 2),
            "loadavg_1m_at_start": round(self.load0, 2),
            "under_load": others > CONTENDED_CORES,
            "cores_by_process": {name: round(cores, 3) for name, cores in by_process.items()},
            "jit_cores_by_process": {name: round(cores, 3) for name, cores in jit.items()},
        }

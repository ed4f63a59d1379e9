"""How quick this machine is right now: a fixed piece of Python work, timed.

The same code's figures moved by half and more from one day to the next on this (shared,
virtual) machine: the raw aiokafka loop's hop at 1,000/s took p50 2.6-2.7 ms one day and 6.5 ms
the next, with nothing else running. A result file alone cannot say whether a change
between two of them is the code's or the machine's. So every run times the same single-threaded
work, shaped like the router's own (dicts, strings, JSON both ways, small objects), before its
broker starts and again after it stops, and records the milliseconds it took (the best of
`REPEATS`: the least disturbed). Lower is quicker; `bench.compare` prints both runs' figures and
their ratio beside the targets.

The machine's speed also changed within minutes, and within a run: the same fixed work took
~112 ms, then 195 and 220 ms before the next two latency runs, then ~112 again (session 20).
At 1,000/s the router is ~0.9 of a core busy in the measured rounds, so a slower machine
saturates it and a backlog grows: p50 22 ms in the first of those runs, 4.6-7.6 ms in the four
after it; in another run, timed at ~113 ms before and after, the latency grew to 49 ms in the
middle of its measured rounds and fell back. Timing the work before each scenario cannot see
that, so `Probe` times a small slice of the same work every half second while a scenario
measures, in a process of its own, by its own CPU time: time spent waiting for a core behind
our own processes does not count in it, a slower machine does (their use of the caches still
may: compare runs of one scenario with each other rather than with the idle figure).

The Python work alone missed a slow day: it took its usual ~115 ms while the raw loop routed
2,414/s against 4,041/s the session before, at 0.325 against 0.190 ms of CPU per completion,
and the broker's CPU per completion was 2.5 times what it had been. What had slowed down was
the kernel's part, which every Kafka hop pays: so a second figure times round trips of a
small message between two threads over a local socket pair (system calls, wake-ups, thread
switches).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.stats import percentiles

REPEATS = 5
ROUNDS = 4_000  # ~110 ms of work per repeat on this machine
ROUND_TRIPS = 2_000  # per repeat of the loopback figure
PROBE_ROUNDS = 20  # a probe's timed slice of the fixed work: ~0.6 ms of CPU on this machine
PROBE_WARM = 100  # rounds run untimed before each slice (~3 ms)
PROBE_INTERVAL = 0.5  # seconds between slices: ~0.7 % of a core
ROOT = Path(__file__).resolve().parents[1]  # where `bench` imports from
MESSAGE = b"x" * 64


@dataclass
class _Visit:
    step: str
    visit: int
    outcome: str | None


def _work(rounds: int) -> int:
    """Build, encode, decode and walk a state-like record `rounds` times; returns a checksum
    (so nothing can be skipped)."""
    total = 0
    for n in range(rounds):
        visits = {f"step-{k}": (n + k) % 4 for k in range(8)}
        state = {"instance_id": f"i-{n:06d}", "tenant": "acme", "version": n % 7,
                 "visits": visits, "recent": [f"evt-{n}-{k}" for k in range(6)],
                 "history": [_Visit(s, v, "PASS" if v % 2 else None).__dict__
                             for s, v in visits.items()]}
        back = json.loads(json.dumps(state))
        total += sum(back["visits"].values()) + len(back["history"]) + len(back["instance_id"])
    return total


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the calibration's socket pair closed")
        data += chunk
    return data


def _loopback(round_trips: int) -> float:
    """Seconds for `round_trips` echoes of `MESSAGE` by another thread over a socket pair."""
    ours, theirs = socket.socketpair()

    def echo() -> None:
        for _ in range(round_trips):
            theirs.sendall(_receive(theirs, len(MESSAGE)))

    echoer = threading.Thread(target=echo, name="calibrate-echo")
    try:
        echoer.start()
        started = time.perf_counter()
        for _ in range(round_trips):
            ours.sendall(MESSAGE)
            _receive(ours, len(MESSAGE))
        return time.perf_counter() - started
    finally:
        echoer.join(10)
        ours.close()
        theirs.close()


def measure(repeats: int = REPEATS, rounds: int = ROUNDS,
            round_trips: int = ROUND_TRIPS) -> dict[str, Any]:
    """The best and the median of `repeats` timings of the fixed work, in milliseconds, and
    the best mean loopback round trip, in microseconds."""
    times, trips = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        _work(rounds)
        times.append(1000 * (time.perf_counter() - started))
        trips.append(1e6 * _loopback(round_trips) / round_trips)
    times.sort()
    return {"best_ms": round(times[0], 2), "median_ms": round(times[len(times) // 2], 2),
            "rounds": rounds, "repeats": repeats,
            "loopback_us": round(min(trips), 1), "round_trips": round_trips}


def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """How much slower machine B was than machine A (B's best ÷ A's best: 1.2 = 20 % slower)."""
    if not a or not b or not a.get("best_ms") or not b.get("best_ms") \
            or a.get("rounds") != b.get("rounds"):
        return None
    return round(b["best_ms"] / a["best_ms"], 3)


def probe_loop(rounds: int, warm: int, interval: float) -> None:
    """`Probe`'s process: every `interval` s, run `warm` rounds untimed and then time `rounds`
    by this thread's CPU time; print each, scaled to `ROUNDS`, one a line."""
    scale = ROUNDS / rounds
    while True:
        _work(warm)  # after a pause the first rounds run cold: 2x slower here, untimed
        started = time.thread_time()
        _work(rounds)
        print(round(1000 * scale * (time.thread_time() - started), 2), flush=True)
        time.sleep(interval)


class Probe:
    """While the block runs, a process of its own times `PROBE_ROUNDS` rounds of the fixed work
    every `PROBE_INTERVAL` seconds by its own CPU time (`time.thread_time`), scaled to
    `ROUNDS`: the unit of `measure`'s `best_ms`, so the two compare. A process, not a thread
    of the bench: a thread would hold the bench's GIL, and the bench's clock, for the slice.

        with calibrate.Probe() as probe:
            ...  # the measured rounds
        result["machine_during"] = probe.summary()
    """

    def __init__(self, rounds: int = PROBE_ROUNDS, warm: int = PROBE_WARM,
                 interval: float = PROBE_INTERVAL) -> None:
        self.args = (rounds, warm, interval)
        self.samples: list[float] = []  # ms, scaled to ROUNDS
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Probe:
        rounds, warm, interval = self.args
        code = f"from bench.calibrate import probe_loop; probe_loop({rounds}, {warm}, {interval!r})"
        self._proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                                      stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, args=(self._proc,),
                                        name="calibrate-probe", daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.samples.append(float(line))

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._proc is not None:
            # At least its first slice, which it runs at once (a quick run's block may end
            # before the process has even started).
            for _ in range(100):
                if self.samples or self._proc.poll() is not None:
                    break
                time.sleep(0.05)  # polling for the first line, bounded (5 s)
            self._proc.terminate()
            self._proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)  # the pipe's end: every line printed is read

    def summary(self) -> dict[str, Any]:
        """The probes' percentiles (`bench.stats`), in `measure`'s `best_ms` unit."""
        if not self.samples:
            return {"probes": 0, "rounds": ROUNDS}
        spread = percentiles(self.samples, digits=1)
        return {"probes": spread["n"], "rounds": ROUNDS,
                **{f"{q}_ms": spread[q] for q in ("p50", "p90", "max")}}

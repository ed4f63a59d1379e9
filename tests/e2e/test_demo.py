"""The README's first command: `flowline demo`, run as a newcomer runs it.

The demo starts its own broker (the one `FLOWLINE_BROKER` names; Tansu, the embedded default,
in `make test-tansu`) and the four services, remanufactures parts through inspection and
rework, prints a summary and, with `--linger`, keeps the stack up. The test then reads the
web page and the plant manager's analytics from that stack and checks they tell the same story
as the terminal; then stops the demo with Ctrl-C (SIGINT) and checks that it cleaned up. A
demo ended by SIGTERM halfway (`kill`, `timeout`) must clean up just the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from services.demo.run import OPERATORS
from tests.conftest import wait_for

PARTS = 8
URL = re.compile(r"watch it live at (http://127\.0\.0\.1:\d+)/")


class Output:
    """The demo's stdout, line by line, read by a thread so the test can poll it."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        threading.Thread(target=self._read, args=(proc.stdout,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def line(self, predicate: Any) -> str | None:
        """The first line so far that `predicate` accepts, else None."""
        while not self._queue.empty():
            self.lines.append(self._queue.get_nowait())
        return next((ln for ln in self.lines if predicate(ln)), None)

    def tail(self) -> str:
        self.line(lambda _: False)
        return "\n".join(self.lines[-40:])


def test_the_demo_runs_parts_to_the_end_and_the_web_page_agrees(tmp_path: Path) -> None:
    proc = demo(tmp_path, "--parts", str(PARTS), "--seed", "3", "--linger")
    out = Output(proc)
    try:
        gateway = web_address(proc, out)
        wait_for(lambda: out.line(lambda ln: "stack still running" in ln)
                 or proc.poll() is not None, 300, what="the demo's summary")
        assert proc.poll() is None, f"the demo ended early:\n{out.tail()}"

        # The terminal's summary is one JSON line, whole however wide the terminal is.
        summary_line = out.line(lambda ln: ln.startswith("{") and '"parts"' in ln)
        assert summary_line, out.tail()
        summary = json.loads(summary_line)
        assert summary["parts"] == PARTS
        assert sum(summary["terminal_status"].values()) == PARTS
        visits = summary["step_visits"]
        assert visits["receive"] == PARTS
        # Every rework leads back to an inspection: inspections = parts + rework visits.
        assert visits["inspect"] == PARTS + visits.get("rework", 0)
        assert summary["rework_visits"] > 0, "seed 3 fails some inspections: rework is shown"

        with httpx.Client(base_url=gateway, timeout=10) as web:
            page = web.get("/")
            assert page.status_code == 200
            assert "text/html" in page.headers["content-type"]
            flow = web.get("/v1/analytics/flow", params={"process": "remanufacturing"})
            assert flow.status_code == 200, flow.text
            body = flow.json()
            assert body["instances"] == PARTS
            assert body["first_pass_yield"]["ended"] == PARTS
            # The page's first-pass yield has 4 decimals, the terminal's 3.
            assert round(body["first_pass_yield"]["ratio"], 3) == summary["first_pass_yield"]
            assert {s["step"]: s["visits"] for s in body["steps"]
                    if s["step"] in visits} == {k: v for k, v in visits.items()
                                                if k in {s["step"] for s in body["steps"]}}
            assert all(s["wip"] == 0 for s in body["steps"]), "every part has ended"
            # Operators worked their inboxes over HTTP: every part was received by one.
            received = web.get("/v1/tasks", params={"role": "receiving", "status": "completed",
                                                    "limit": 500}).json()
            assert received["total"] == PARTS
            assert {t["assignee"] for t in received["items"]} <= set(OPERATORS["receiving"])

        proc.send_signal(signal.SIGINT)
        code = wait_for(lambda: proc.poll() is not None and (proc.returncode,), 60,
                        what="the demo to stop on Ctrl-C")
        assert code == (0,), out.tail()
        wait_for(lambda: refused(gateway), 30, what="the demo's gateway to be gone")
        assert group_gone(proc), "a process the demo started is still running"
    finally:
        stop(proc)


def test_a_terminated_demo_stops_the_stack_it_started(tmp_path: Path) -> None:
    """`kill` or `timeout` mid-run: the broker and services go too, as on Ctrl-C."""
    proc = demo(tmp_path, "--parts", "200")  # more than it finishes before the signal
    out = Output(proc)
    try:
        gateway = web_address(proc, out)
        broker = wait_for(lambda: out.line(lambda ln: "broker tansu at" in ln
                                           or "broker kafka at" in ln), 10, what="its broker")
        bootstrap = broker.split(" at ", 1)[1].split(";", 1)[0]
        with httpx.Client(timeout=2) as client:
            assert client.get(f"{gateway}/healthz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        try:
            wait_for(lambda: proc.poll() is not None, 60, what="the demo to end on SIGTERM")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{out.tail()}") from None
        host, port = bootstrap.rsplit(":", 1)
        wait_for(lambda: refused(gateway) and refused(f"http://{host}:{port}"), 30,
                 what="its gateway and broker to be gone")
        assert group_gone(proc), "a process the demo started is still running"
    finally:
        stop(proc)


def web_address(proc: subprocess.Popen[str], out: Output) -> str:
    """The gateway the demo says to watch, once its stack is up."""
    line = wait_for(lambda: out.line(URL.search) or proc.poll() is not None, 120,
                    what="the demo's web address")
    assert isinstance(line, str), out.tail()
    return URL.search(line).group(1)  # type: ignore[union-attr]


def demo(cwd: Path, *args: str) -> subprocess.Popen[str]:
    broker = os.environ.get("FLOWLINE_BROKER", "tansu")
    flowline = Path(sys.executable).parent / "flowline"
    return subprocess.Popen(
        [str(flowline), "demo", "--broker", broker, *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "100"},
        start_new_session=True)  # its broker and services share its process group


def refused(url: str) -> bool:
    """Nothing listens at `url`'s host and port any more."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((host, int(port))) != 0


def group_gone(proc: subprocess.Popen[str]) -> bool:
    """No process is left in the demo's process group: its broker and services have ended
    (and were reaped by the demo, which waits for each one it stops)."""
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop(proc: subprocess.Popen[str]) -> None:
    """End the demo whatever happened: Ctrl-C stops its stack. A kill of the demo alone would
    orphan the broker and services it started, so whatever of its process group is left
    then (a demo that ignored Ctrl-C, or one that failed to clean up) is killed with it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(60)
    with contextlib.suppress(ProcessLookupError):  # nobody left in the group: all is well
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)

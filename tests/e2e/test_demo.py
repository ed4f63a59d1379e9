"""The README's first command: `flowline demo`, run as a newcomer runs it.

The demo starts its own broker (the one `FLOWLINE_BROKER` names; Tansu, the embedded default,
in `make test-tansu`) and the four services, remanufactures parts through inspection and
rework, prints a summary and, with `--linger`, keeps the stack up. The test then reads the
web page and the plant manager's analytics from that stack and checks they tell the same story
as the terminal; then stops the demo with Ctrl-C (SIGINT) and checks that it cleaned up.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from services.demo.run import OPERATORS
from tests.conftest import wait_for

PARTS = 12
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
    broker = os.environ.get("FLOWLINE_BROKER", "tansu")
    flowline = Path(sys.executable).parent / "flowline"
    proc = subprocess.Popen(
        [str(flowline), "demo", "--parts", str(PARTS), "--seed", "3", "--broker", broker,
         "--linger"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "100"},
        start_new_session=True)  # its broker and services share its process group
    out = Output(proc)
    try:
        url_line = wait_for(lambda: out.line(URL.search) or proc.poll() is not None, 120,
                            what="the demo's web address")
        assert isinstance(url_line, str), out.tail()
        gateway = URL.search(url_line).group(1)  # type: ignore[union-attr]
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
        with httpx.Client(timeout=2) as client:
            def refused() -> bool:
                try:
                    client.get(f"{gateway}/healthz")
                except httpx.TransportError:
                    return True
                return False

            wait_for(refused, 30, what="the demo's gateway to be gone")
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    """End the demo whatever happened: Ctrl-C stops its stack; a kill of the demo alone would
    orphan the broker and services it started, so a demo that ignores Ctrl-C is killed with
    its whole process group."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

"""py-spy attached to a running router, summarised by layer and as the top functions by time."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


class Profile:
    """`py-spy record --format raw` (collapsed stacks) on `pid` until `stop()`."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        binary = py_spy()
        self._proc: subprocess.Popen[bytes] | None = None
        if binary:
            self._proc = subprocess.Popen(
                [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                 "--nonblocking", "--output", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> str:
        """Stop sampling and return a text summary (empty when py-spy is not installed)."""
        if self._proc is None:
            return ""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        return summarise(self.out) if self.out.exists() else ""


def _frame(text: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"; the line differs per sample.
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


SCAFFOLD = 0.6  # frames in more of the samples than this are the event loop and CLI: hidden


# The router's own packages, and mode's frames that stand for the event loop's native code
# (uvloop's loop, its epoll wait and callback dispatch are C: py-spy books them to the last
# Python frame, the worker's `run_until_complete` or the consumer thread's loop).
OWN = frozenset({"services", "schemas"})
LOOP_FRAMES = frozenset({"Worker.execute_from_commandline", "ServiceThread._start_thread"})
_PREFIX = re.compile(r"^.*(?:site-packages|lib/python3\.\d+)/")


def layer(frame: str) -> str:
    """The layer a raw py-spy frame (`func (path:line)`) belongs to: the top-level package of
    its file, `flowline` for the router's own, `stdlib <module>`, or the event loop."""
    name, _, where = frame.partition(" (")
    if name in LOOP_FRAMES:
        return "event loop (native, idle)"
    written = where.rstrip(")").rsplit(":", 1)[0]
    path = _PREFIX.sub("", written)
    parts = path.strip("/").split("/")
    # py-spy shortens paths to their import name; a full one names the checkout first.
    if parts[0] in OWN or (path == written and path.startswith("/") and OWN & set(parts)):
        return "flowline"
    top = parts[0].removesuffix(".py")
    return f"stdlib {top}" if top in sys.stdlib_module_names else top


def summarise(collapsed: Path, top: int = 40) -> str:
    self_time: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ")
                  and not f.startswith("thread ")]
        if not frames:
            continue
        samples += count
        self_time[frames[-1]] += count
        by_layer[layer(stack.split(";")[-1])] += count
        for f in set(frames):
            total_time[f] += count
    if not samples:
        return "no samples"
    lines = [f"samples: {samples}", "", "self time by layer (% of samples; native code is booked "
             "to the Python frame that called it):"]
    lines += [f"{100 * c / samples:6.1f}%  {name}" for name, c in by_layer.most_common()]
    lines += ["", f"top {top} by self time (% of samples):"]
    lines += [f"{100 * c / samples:6.1f}%  {f}" for f, c in self_time.most_common(top)]
    lines += ["", f"top {top} by inclusive time (% of samples; frames in over "
              f"{SCAFFOLD:.0%} of them — event loop, CLI — left out):"]
    inclusive = [(f, c) for f, c in total_time.most_common() if c <= SCAFFOLD * samples]
    lines += [f"{100 * c / samples:6.1f}%  {f}" for f, c in inclusive[:top]]
    return "\n".join(lines)

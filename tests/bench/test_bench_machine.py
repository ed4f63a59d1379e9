"""The bench's meter of a JVM's JIT compiler threads, against a real JVM (the broker's Java)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.machine import TICKS, CpuMeter, jit_ticks
from services.common.brokers import find_java
from tests.conftest import wait_for

# A busy loop: hot code the JIT compiles within a second or so of starting.
SPIN = """
public class Spin {
    public static void main(String[] args) {
        long sum = 0;
        while (true) { for (int i = 0; i < 1_000_000; i++) { sum += i % 7; } if (sum < 0) break; }
    }
}
"""


@pytest.fixture
def jvm(tmp_path: Path) -> Iterator[int]:
    source = tmp_path / "Spin.java"
    source.write_text(SPIN)
    proc = subprocess.Popen([find_java(), "-Xmx64m", str(source)])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def test_a_jvm_s_compiler_threads_are_metered_and_a_python_process_has_none(jvm: int) -> None:
    meter = CpuMeter()
    meter.track(jvm, "jvm")
    wait_for(lambda: jit_ticks(jvm) >= TICKS // 20, timeout=60,  # 50 ms of compiling
             what="the JVM's compiler threads to use CPU")
    assert jit_ticks(os.getpid()) == 0  # no compiler threads here
    report = meter.report()
    assert 0 < report["jit_cores_by_process"]["jvm"] <= report["cores_by_process"]["jvm"]


def test_a_process_that_is_gone_has_no_jit_ticks() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait(10)
    assert jit_ticks(proc.pid) == 0

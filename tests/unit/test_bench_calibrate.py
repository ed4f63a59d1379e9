"""The machine-speed figure each bench result carries, and how results show and compare it."""

from __future__ import annotations

from typing import Any

from bench import calibrate, compare, report
from tests.conftest import wait_for


def test_the_fixed_work_is_timed_and_more_of_it_takes_longer() -> None:
    small = calibrate.measure(repeats=3, rounds=200, round_trips=50)
    large = calibrate.measure(repeats=3, rounds=2_000, round_trips=50)
    assert small["rounds"] == 200 and small["repeats"] == 3
    assert 0 < small["best_ms"] <= small["median_ms"]
    assert large["best_ms"] > 3 * small["best_ms"]


def test_loopback_round_trips_are_timed_and_more_of_them_take_longer() -> None:
    few, many = calibrate._loopback(20), calibrate._loopback(2_000)
    assert 0 < few < many
    assert calibrate.measure(repeats=1, rounds=10, round_trips=100)["loopback_us"] > 0


def test_the_work_gives_the_same_checksum_every_time() -> None:
    assert calibrate._work(50) == calibrate._work(50) > 0


def test_a_probe_times_slices_of_the_work_while_its_block_runs() -> None:
    with calibrate.Probe(rounds=10, warm=10, interval=0.01) as probe:
        wait_for(lambda: len(probe.samples) >= 5, 30, what="five probes")
    summary = probe.summary()
    assert summary["probes"] == len(probe.samples) >= 5
    assert summary["rounds"] == calibrate.ROUNDS  # scaled to `measure`'s unit
    assert 0 < summary["p50_ms"] <= summary["p90_ms"] <= summary["max_ms"]
    assert probe._proc is not None and probe._proc.poll() is not None  # ended with the block


def test_a_probe_ended_at_once_still_has_its_first_slice() -> None:
    with calibrate.Probe(rounds=10, warm=10) as probe:
        pass
    assert probe.summary()["probes"] == 1


def test_a_probe_s_summary_is_in_the_calibration_s_unit() -> None:
    probe = calibrate.Probe(rounds=40)
    assert probe.summary() == {"probes": 0, "rounds": calibrate.ROUNDS}
    probe.samples = [float(ms) for ms in range(100, 200, 10)]  # 100 … 190 ms
    assert probe.summary() == {"probes": 10, "rounds": calibrate.ROUNDS, "p50_ms": 150.0,
                               "p90_ms": 190.0, "max_ms": 190.0}  # as bench.stats ranks


def test_ratio_is_b_over_a_and_only_for_the_same_work() -> None:
    a = {"best_ms": 100.0, "rounds": 4_000}
    assert calibrate.ratio(a, {"best_ms": 125.0, "rounds": 4_000}) == 1.25
    assert calibrate.ratio(a, {"best_ms": 125.0, "rounds": 2_000}) is None
    assert calibrate.ratio(None, a) is None


def _result(start: float | None, end: float | None = None) -> dict[str, Any]:
    machine: dict[str, Any] = {
        "commit": "abc1234", "dirty": False, "nproc": 2, "cpu_model": "x", "memory_mb": 1,
        "python": "3.11", "faust": "0", "aiokafka": "0", "loadavg_at_start": [0.0, 0.0, 0.0]}
    if start is not None:
        machine["speed"] = {"start": {"best_ms": start, "rounds": 4_000, "repeats": 5,
                                  "loopback_us": 15.5},
                        "end": {"best_ms": end or start, "rounds": 4_000, "repeats": 5,
                                "loopback_us": 31.0}}
    return {"meta": {"started_at": "2026-11-23T09:00:00+00:00", "command": "python -m bench.run",
                     "mode": "full", "broker": {"kind": "kafka", "version": "4"},
                     "machine": machine},
            "scenarios": {}}


def test_the_markdown_says_how_quick_the_machine_was() -> None:
    result = _result(110.0, 121.5)
    result["scenarios"]["inbox"] = {"cpu": {"seconds": 30.0}}
    result["meta"]["machine"]["speed"]["scenarios"] = {"inbox": {"best_ms": 231.25}}
    text = report.markdown(result)
    assert "110.0 ms before the broker started, 121.5 ms after it stopped" in text
    assert "between two threads 15.5 / 31.0 µs" in text
    row = next(line for line in text.splitlines() if line.startswith("| inbox |"))
    assert row.endswith("| 231.2 / — |")
    assert "Machine speed" not in report.markdown(_result(None))


def test_compare_warns_when_the_machines_differ() -> None:
    same = compare.speed(_result(100.0), _result(102.0))
    assert "1.02×" in same and "with care" not in same
    slower = compare.speed(_result(100.0), _result(150.0))
    assert "1.50×" in slower and "compare with care" in slower
    assert "A 15.5 / 31.0, B 15.5 / 31.0" in slower
    assert "not recorded" in compare.speed(_result(None), _result(150.0))


def test_the_markdown_shows_a_jvm_s_jit_share_beside_its_cpu() -> None:
    result = _result(110.0)
    result["scenarios"]["inbox"] = {"cpu": {
        "seconds": 30.0, "cores_by_process": {"bench": 0.25, "broker": 0.46, "tasks": 0.5},
        "jit_cores_by_process": {"broker": 0.17}}}
    result["scenarios"]["latency"] = {"cpu": {  # a result from before the JIT was metered
        "seconds": 30.0, "cores_by_process": {"broker": 0.3}}}
    text = report.markdown(result)
    assert "- inbox: bench 0.25, broker 0.46 (JIT 0.17), tasks 0.50" in text
    assert "- latency: broker 0.30\n" in text

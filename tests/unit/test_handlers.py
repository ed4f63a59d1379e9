"""Seed 003's analysis handlers: pure functions of readings, and the handlers around them."""

from __future__ import annotations

from typing import Any

import pytest

from services.workers.action_logger import ActionLogger
from services.workers.analysis import (
    FAIL,
    PASS,
    WARNING,
    analyze_trends,
    combine,
    detect_outliers,
    find_outliers,
    fit_trend,
    judge,
    synthesize,
    verdict,
)
from services.workers.registry import REGISTRY, Failed, InvalidInput, JobContext, Result

# Readings with a little deterministic noise around a level (no outliers, no trend).
NOISE = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.4, -0.3, 0.1,
         -0.2, 0.3, -0.1, 0.2, -0.3, 0.1, 0.0, -0.2, 0.3, -0.1]


def level(value: float) -> list[float]:
    return [value + n for n in NOISE]


def ramp(start: float, total_change: float) -> list[float]:
    """A straight line from `start` changing by `total_change` over the run, plus the noise."""
    step = total_change / (len(NOISE) - 1)
    return [start + i * step + n for i, n in enumerate(NOISE)]


def ctx(context: dict[str, Any] | None = None, upstream: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None, step: str = "s") -> JobContext:
    return JobContext(job_id=f"i-1/{step}/1", instance_id="i-1", step=step, visit=1, attempt=1,
                      context=context or {}, params=params or {}, upstream=upstream or {})


def run_dag(sensors: dict[str, list[float]]) -> tuple[dict[str, Result], ActionLogger]:
    """The manufacturing-analysis DAG by hand: each step reads the outputs before it."""
    data = {"data": {"sensors": sensors}}
    log = ActionLogger()
    out: dict[str, Result] = {}
    out["detect_outliers"] = detect_outliers(ctx(data, step="detect_outliers"), log)
    out["analyze_trends"] = analyze_trends(ctx(data, step="analyze_trends"), log)
    upstream = {k: r.output for k, r in out.items()}
    out["synthesize"] = synthesize(ctx(data, upstream, step="synthesize"), log)
    upstream["synthesize"] = out["synthesize"].output
    out["verdict"] = verdict(ctx(data, upstream, step="verdict"), log)
    return out, log


# --- the pure analysis ----------------------------------------------------------------------


def test_a_value_beyond_two_standard_deviations_is_an_outlier() -> None:
    values = level(10.0)
    values[7] = 30.0
    found = find_outliers(values)
    assert [o["index"] for o in found["outliers"]] == [7]
    assert found["outliers"][0]["value"] == 30.0 and found["outliers"][0]["z"] > 2
    assert found["count"] == 1 and found["ratio"] == pytest.approx(1 / 20)


def test_values_within_two_standard_deviations_are_not_outliers() -> None:
    assert find_outliers(level(10.0))["count"] == 0
    assert find_outliers([1.0, 1.0, 1.0, 1.0])["count"] == 0  # no spread, no outliers
    values = [-1.0, 1.0] * 10
    assert find_outliers(values, std_devs=1.0)["count"] == 0  # exactly 1 sigma is not beyond
    assert find_outliers(values, std_devs=0.99)["count"] == 20


def test_the_trend_is_the_least_squares_slope() -> None:
    trend = fit_trend([100 + 2 * i for i in range(10)])
    assert trend["slope"] == pytest.approx(2.0) and trend["intercept"] == pytest.approx(100.0)
    assert trend["change"] == pytest.approx(18.0)
    assert trend["relative_change"] == pytest.approx(18.0 / 109.0)
    assert trend["direction"] == "rising"
    assert fit_trend([5.0, 4.0, 3.0])["direction"] == "falling"
    assert fit_trend(level(50.0))["direction"] == "flat"
    zero_mean = fit_trend([-1.0, 0.0, 1.0])
    assert zero_mean["relative_change"] is None and zero_mean["direction"] == "rising"


@pytest.mark.parametrize(("sensors", "expected"), [
    ({"temp": level(70.0), "pressure": level(30.0)}, PASS),
    ({"temp": [*level(70.0)[:9], 95.0, *level(70.0)[10:]], "pressure": level(30.0)}, WARNING),
    ({"temp": ramp(70.0, 7.0), "pressure": level(30.0)}, WARNING),  # +10%: a trend
    ({"temp": ramp(70.0, 21.0), "pressure": level(30.0)}, FAIL),  # +30%: too steep
    ({"temp": [70.0, 71.0, 69.0, 95.0, 70.0, 45.0] * 2 + level(70.0)[:8],
      "pressure": level(30.0)}, FAIL),  # 4 of 20 readings are outliers: more than 10%
])
def test_verdict(sensors: dict[str, list[float]], expected: str) -> None:
    results, _ = run_dag(sensors)
    assert results["verdict"].outcome == expected, results["verdict"].output["reasons"]
    assert results["verdict"].output["verdict"] == expected


def test_known_outlier_and_trend_give_a_warning_that_names_both() -> None:
    temp = ramp(70.0, 7.0)
    temp[10] = 90.0
    results, log = run_dag({"temp": temp, "pressure": level(30.0)})

    outliers = results["detect_outliers"].output["sensors"]
    assert [o["index"] for o in outliers["temp"]["outliers"]] == [10]
    assert outliers["pressure"]["count"] == 0
    trends = results["analyze_trends"].output["sensors"]
    assert trends["temp"]["direction"] == "rising"
    assert trends["temp"]["slope"] == pytest.approx(7.0 / 19, rel=0.5)
    assert trends["pressure"]["direction"] == "flat"

    synthesis = results["synthesize"].output
    assert synthesis["total_outliers"] == 1 and synthesis["trending"] == ["temp"]
    judged = results["verdict"]
    assert judged.outcome == WARNING
    assert any("temp: 1 outlier" in r for r in judged.output["reasons"])
    assert any("temp: rising trend" in r for r in judged.output["reasons"])
    assert judged.measurements == {"verdict": WARNING}

    # Seed 004's logger: a step per sensor linked to it, progress to the end, stats.
    tagged = [s for s in log.steps if s["entity_tag"] == "temp"]
    assert tagged and all(s["entity_type"] == "Sensor" for s in tagged)
    assert tagged[0]["entity_route"] == "/v1/analyses/i-1"
    assert log.progress == 1.0
    assert log.stats["outliersFound"] == 1 and log.stats["sensorsProcessed"] == 2


def test_thresholds_come_from_the_step_params() -> None:
    temp = ramp(70.0, 7.0)  # +10%
    data = {"data": {"sensors": {"temp": temp}}}
    log = ActionLogger()
    upstream = {"o": detect_outliers(ctx(data), log).output,
                "t": analyze_trends(ctx(data), log).output}
    upstream["s"] = synthesize(ctx(data, upstream), log).output
    assert verdict(ctx(data, upstream), log).outcome == WARNING
    strict = verdict(ctx(data, upstream, params={"fail_change": 0.05}), log)
    assert strict.outcome == FAIL
    lenient = analyze_trends(ctx(data, params={"trend_threshold": 0.5}), log)
    assert lenient.output["sensors"]["temp"]["direction"] == "flat"


def test_combine_and_judge_are_pure_over_their_inputs() -> None:
    synthesis = combine({"std_devs": 2, "sensors": {"a": {"count": 0, "ratio": 0.0}}},
                        {"sensors": {"a": {"slope": 0.0, "relative_change": 0.0,
                                           "direction": "flat"}}})
    assert synthesis["findings"] == [] and judge(synthesis)["verdict"] == PASS


# --- bad input is permanent -----------------------------------------------------------------


@pytest.mark.parametrize("context", [
    {},
    {"data": {}},
    {"data": {"sensors": {}}},
    {"data": {"sensors": {"temp": [1.0, 2.0]}}},
    {"data": {"sensors": {"temp": [1.0, "hot", 3.0]}}},
    {"data": {"sensors": {"temp": [1.0, True, 3.0]}}},
])
def test_unusable_data_fails_for_good(context: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as raised:
        detect_outliers(ctx(context), ActionLogger())
    assert raised.value.retryable is False


def test_synthesize_needs_both_upstream_analyses() -> None:
    data = {"data": {"sensors": {"temp": level(1.0)}}}
    only_outliers = {"detect_outliers": detect_outliers(ctx(data), ActionLogger()).output}
    with pytest.raises(InvalidInput, match="trends"):
        synthesize(ctx(data, only_outliers), ActionLogger())
    with pytest.raises(InvalidInput, match="param std_devs"):
        detect_outliers(ctx(data, params={"std_devs": "two"}), ActionLogger())


def test_the_built_in_handlers_are_registered() -> None:
    assert {"detect_outliers", "analyze_trends", "synthesize", "verdict"} <= set(
        REGISTRY.names())
    assert REGISTRY.get("verdict") is verdict
    with pytest.raises(InvalidInput, match="no handler"):
        REGISTRY.get("nope")


def test_action_logger_buffers_until_drained_and_fails_fast() -> None:
    log = ActionLogger()
    log.log_step("Created P-101", entity_tag="P-101", entity_route="/assets/123")
    log.update_progress(0.5, "50/100")
    entries, progress = log.drain()
    assert [e["message"] for e in entries] == ["Created P-101"]
    assert progress == (0.5, "50/100")
    assert log.drain() == ([], None)  # nothing new
    with pytest.raises(ValueError):
        log.log_step("x", level="LOUD")
    with pytest.raises(Failed) as failed:
        log.fail("Database connection lost", stack="trace")
    assert failed.value.retryable is False and failed.value.stack == "trace"
    assert log.steps[-1]["level"] == "ERROR"

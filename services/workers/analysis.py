"""Seed 003's manufacturing-analysis handlers: outliers, trends, synthesis, verdict.

The analysis itself is pure functions of readings (`find_outliers`, `fit_trends`, `combine`,
`judge`); the handlers around them read the job's input, log a step per sensor and return the
output. The `manufacturing-analysis` process template runs them as a DAG: outliers and trends
in parallel, then synthesize, then verdict, whose outcome (PASS, WARNING, FAIL) routes it.

Input: the instance context's `data.sensors`, readings per sensor in time order:
`{"data": {"sensors": {"temperature": [71.2, 71.4, ...], "pressure": [...]}}}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from services.workers.registry import InvalidInput, JobContext, Result, StepLog, handler

PASS, WARNING, FAIL = "PASS", "WARNING", "FAIL"
# Verdict thresholds (step params may override them).
DEFAULTS: dict[str, float] = {
    "std_devs": 2.0,  # an outlier is further than this many standard deviations from the mean
    "trend_threshold": 0.05,  # a trend: the fitted line moves >= 5% of the mean over the run
    "fail_outlier_ratio": 0.1,  # FAIL when more than 10% of a sensor's readings are outliers
    "fail_change": 0.2,  # FAIL when a sensor drifts by more than 20% of its mean over the run
}


# --- the analysis (pure) --------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation."""
    n = len(values)
    mean = math.fsum(values) / n
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)


def find_outliers(values: Sequence[float], std_devs: float = 2.0) -> dict[str, Any]:
    """Readings further than `std_devs` standard deviations from the mean (strictly)."""
    mean, std = mean_std(values)
    outliers = [{"index": i, "value": v, "z": round((v - mean) / std, 3)}
                for i, v in enumerate(values) if std > 0 and abs(v - mean) > std_devs * std]
    return {"n": len(values), "mean": mean, "std": std, "outliers": outliers,
            "count": len(outliers), "ratio": len(outliers) / len(values)}


def fit_trend(values: Sequence[float], threshold: float = 0.05) -> dict[str, Any]:
    """The least-squares line through (index, value): slope per reading, and the change it
    makes over the run relative to the mean (None when the mean is 0); `direction` is flat
    below `threshold`."""
    n = len(values)
    if n < 2:
        raise ValueError("a trend needs at least 2 readings")
    mean_x, mean_y = (n - 1) / 2, math.fsum(values) / n
    sxx = math.fsum((i - mean_x) ** 2 for i in range(n))
    slope = math.fsum((i - mean_x) * (v - mean_y) for i, v in enumerate(values)) / sxx
    change = slope * (n - 1)
    # Around a zero mean there is no relative scale: any change counts as a trend.
    relative = change / abs(mean_y) if mean_y else None
    steep = abs(relative) >= threshold if relative is not None else change != 0
    direction = ("rising" if slope > 0 else "falling") if steep else "flat"
    return {"n": n, "slope": slope, "intercept": mean_y - slope * mean_x, "change": change,
            "relative_change": relative, "direction": direction}


def combine(outliers: Mapping[str, Any], trends: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the two analyses per sensor, with findings a person can read."""
    o_sensors, t_sensors = outliers.get("sensors", {}), trends.get("sensors", {})
    sensors: dict[str, Any] = {}
    findings: list[str] = []
    for name in sorted(set(o_sensors) | set(t_sensors)):
        o, t = o_sensors.get(name, {}), t_sensors.get(name, {})
        sensors[name] = {"outliers": o.get("count", 0), "outlier_ratio": o.get("ratio", 0.0),
                         "slope": t.get("slope"), "relative_change": t.get("relative_change"),
                         "direction": t.get("direction", "flat")}
        if o.get("count"):
            findings.append(f"{name}: {o['count']} outlier(s) beyond "
                            f"{outliers.get('std_devs', 2):g} standard deviations")
        if t.get("direction", "flat") != "flat":
            rel = t.get("relative_change")
            size = f"{rel:+.1%} of the mean" if rel is not None else f"{t['change']:+.4g}"
            findings.append(f"{name}: {t['direction']} trend, {size} over the run")
    return {"analysis": "synthesis", "sensors": sensors, "findings": findings,
            "total_outliers": sum(s["outliers"] for s in sensors.values()),
            "trending": [n for n, s in sensors.items() if s["direction"] != "flat"]}


def judge(synthesis: Mapping[str, Any], fail_outlier_ratio: float = 0.1,
          fail_change: float = 0.2) -> dict[str, Any]:
    """PASS: no outliers, no trend. WARNING: some. FAIL: too many outliers on a sensor
    (> `fail_outlier_ratio` of its readings) or too steep a drift (> `fail_change`)."""
    fails: list[str] = []
    warnings: list[str] = []
    for name, s in synthesis.get("sensors", {}).items():
        ratio, change = s.get("outlier_ratio", 0.0), s.get("relative_change") or 0.0
        if ratio > fail_outlier_ratio:
            fails.append(f"{name}: {ratio:.0%} of readings are outliers "
                         f"(limit {fail_outlier_ratio:.0%})")
        elif s.get("outliers"):
            warnings.append(f"{name}: {s['outliers']} outlier(s)")
        if abs(change) > fail_change:
            fails.append(f"{name}: drifts {change:+.1%} over the run (limit {fail_change:.0%})")
        elif s.get("direction", "flat") != "flat":
            warnings.append(f"{name}: {s['direction']} trend ({change:+.1%})")
    verdict = FAIL if fails else WARNING if warnings else PASS
    return {"analysis": "verdict", "verdict": verdict, "reasons": fails + warnings,
            "thresholds": {"fail_outlier_ratio": fail_outlier_ratio, "fail_change": fail_change}}


# --- the handlers ---------------------------------------------------------------------------


def sensors_of(ctx: JobContext) -> dict[str, list[float]]:
    """The readings in the instance context (`data.sensors`), checked."""
    data = ctx.context.get("data")
    sensors = data.get("sensors") if isinstance(data, Mapping) else None
    if not isinstance(sensors, Mapping) or not sensors:
        raise InvalidInput("the instance context has no data.sensors to analyze")
    readings: dict[str, list[float]] = {}
    for name, values in sensors.items():
        if not isinstance(values, list) or len(values) < 3 or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in values):
            raise InvalidInput(f"sensor {name!r} needs at least 3 finite numeric readings")
        readings[str(name)] = [float(v) for v in values]
    return readings


def _param(ctx: JobContext, name: str) -> float:
    value = ctx.params.get(name, DEFAULTS[name])
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidInput(f"param {name} must be a non-negative number, not {value!r}")
    return float(value)


def _upstream(ctx: JobContext, analysis: str) -> Mapping[str, Any]:
    """The output of the finished upstream step that produced `analysis`."""
    for output in ctx.upstream.values():
        if isinstance(output, Mapping) and output.get("analysis") == analysis:
            return output
    raise InvalidInput(f"step {ctx.step} needs the {analysis} of an earlier step; the instance "
                       f"has outputs of: {', '.join(sorted(ctx.upstream)) or 'no step'}")


def _link(ctx: JobContext) -> str:
    return f"/v1/analyses/{ctx.instance_id}"


@handler("detect_outliers")
def detect_outliers(ctx: JobContext, log: StepLog) -> Result:
    """Flag readings more than `std_devs` (2) standard deviations from their sensor's mean."""
    sensors = sensors_of(ctx)
    std_devs = _param(ctx, "std_devs")
    result: dict[str, Any] = {}
    for i, (name, values) in enumerate(sensors.items(), 1):
        result[name] = found = find_outliers(values, std_devs)
        log.log_step(f"{name}: {found['count']} outlier(s) in {found['n']} readings",
                     "WARN" if found["count"] else "INFO", entity_tag=name,
                     entity_type="Sensor", entity_route=_link(ctx))
        log.update_progress(i / len(sensors), f"{i}/{len(sensors)} sensors")
    total = sum(r["count"] for r in result.values())
    log.complete({"sensorsProcessed": len(sensors),
                  "itemsProcessed": sum(len(v) for v in sensors.values()), "outliersFound": total})
    return Result({"analysis": "outliers", "std_devs": std_devs, "sensors": result,
                   "total": total}, measurements={"outliers": total})


@handler("analyze_trends")
def analyze_trends(ctx: JobContext, log: StepLog) -> Result:
    """Fit a linear slope per sensor."""
    sensors = sensors_of(ctx)
    threshold = _param(ctx, "trend_threshold")
    result: dict[str, Any] = {}
    for i, (name, values) in enumerate(sensors.items(), 1):
        result[name] = trend = fit_trend(values, threshold)
        log.log_step(f"{name}: {trend['direction']}, slope {trend['slope']:+.4g} per reading",
                     entity_tag=name, entity_type="Sensor", entity_route=_link(ctx))
        log.update_progress(i / len(sensors), f"{i}/{len(sensors)} sensors")
    trending = [n for n, t in result.items() if t["direction"] != "flat"]
    log.complete({"sensorsProcessed": len(sensors), "trendsFound": len(trending)})
    return Result({"analysis": "trends", "threshold": threshold, "sensors": result,
                   "trending": trending}, measurements={"trending": len(trending)})


@handler("synthesize")
def synthesize(ctx: JobContext, log: StepLog) -> Result:
    """Merge the outlier and trend results of the upstream steps."""
    merged = combine(_upstream(ctx, "outliers"), _upstream(ctx, "trends"))
    for finding in merged["findings"]:
        log.log_step(finding, "WARN", entity_tag=finding.split(":")[0], entity_type="Sensor",
                     entity_route=_link(ctx))
    log.complete({"findings": len(merged["findings"])})
    return Result(merged, measurements={"outliers": merged["total_outliers"],
                                        "trending": len(merged["trending"])})


@handler("verdict")
def verdict(ctx: JobContext, log: StepLog) -> Result:
    """PASS, WARNING or FAIL from the synthesis; the outcome routes the step."""
    judged = judge(_upstream(ctx, "synthesis"), _param(ctx, "fail_outlier_ratio"),
                   _param(ctx, "fail_change"))
    log.log_step(f"verdict {judged['verdict']}" + (
        f": {'; '.join(judged['reasons'])}" if judged["reasons"] else ""),
        "INFO" if judged["verdict"] == PASS else "WARN", entity_route=_link(ctx))
    log.complete({"reasons": len(judged["reasons"])})
    return Result(judged, outcome=judged["verdict"], measurements={"verdict": judged["verdict"]})

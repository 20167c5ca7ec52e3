"""Percentiles without numpy (linear interpolation between closest ranks, like numpy's default)."""

from __future__ import annotations


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(values: list[float], scale: int = 1) -> dict:
    """n, min, mean, p50, p95, p99, max (rounded to 1 decimal; `scale` kept for call clarity)."""
    if not values:
        return {"n": 0}
    v = sorted(values)
    r = lambda x: round(x, 1)  # noqa: E731
    return {
        "n": len(v),
        "min": r(v[0]),
        "mean": r(sum(v) / len(v)),
        "p50": r(percentile(v, 50)),
        "p95": r(percentile(v, 95)),
        "p99": r(percentile(v, 99)),
        "max": r(v[-1]),
    }

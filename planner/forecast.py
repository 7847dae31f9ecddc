"""Arrival rate per SLO class from time-bucketed counts: Holt's linear smoothing (EWMA + trend).

Input: counts per bucket start (s) per class, as the gateway writes them (planner/feed.py).
Only complete buckets count (the current one is still filling). The forecast looks `horizon_s`
ahead (about one re-plan period) and never goes below zero. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

ALPHA = 0.5  # level smoothing: half the weight on the newest bucket
BETA = 0.3  # trend smoothing


def bucket_series(
    counts: Mapping[int, Mapping[str, int]], classes: Sequence[str], now_s: float,
    bucket_s: int, window_s: int,
) -> dict[str, list[float]]:  # fmt: skip
    """Rate (req/s) per class in each complete bucket of the last `window_s`, oldest first."""
    current = int(now_s) // bucket_s * bucket_s
    starts = range(current - window_s, current, bucket_s)
    return {c: [counts.get(b, {}).get(c, 0) / bucket_s for b in starts] for c in classes}


def holt(
    series: Sequence[float], horizon: float, alpha: float = ALPHA, beta: float = BETA
) -> float:
    """Level + horizon × trend after smoothing `series` (oldest first); 0 for no data."""
    if not series:
        return 0.0
    level, trend = series[0], 0.0
    for x in series[1:]:
        prev = level
        level = alpha * x + (1 - alpha) * (level + trend)
        trend = beta * (level - prev) + (1 - beta) * trend
    return max(0.0, level + horizon * trend)


def forecast_rates(
    counts: Mapping[int, Mapping[str, int]], classes: Sequence[str], now_s: float,
    bucket_s: int, window_s: int, horizon_s: float,
) -> dict[str, float]:  # fmt: skip
    series = bucket_series(counts, classes, now_s, bucket_s, window_s)
    return {c: holt(xs, horizon_s / bucket_s) for c, xs in series.items()}


def drifted(
    planned: Mapping[str, float], now: Mapping[str, float], fraction: float, floor_rps: float = 0.2
) -> list[str]:
    """Classes whose rate moved by more than `fraction` of what the plan assumed (rates under
    `floor_rps` count as `floor_rps`, so noise on idle classes does not trigger re-plans)."""
    out = []
    for c, rate in now.items():
        base = max(planned.get(c, 0.0), floor_rps)
        if abs(max(rate, floor_rps) - base) > fraction * base:
            out.append(c)
    return out

"""Arrival rate per SLO class from time-bucketed counts: Holt's linear smoothing (EWMA + trend),
overridden by the last few seconds when the load visibly shifts.

Input: counts per bucket start (s) per class, as the gateway writes them (planner/feed.py).
The smoothed forecast uses complete buckets only (the current one is still filling) and looks
`horizon_s` ahead (about one re-plan period), never below zero. On its own it would see a load
shift only once a bucket completes, 10-20 s late, and then only halfway; so `estimate_rates`
also reads the last bucket width of arrivals (the current bucket so far plus the tail of the one
before). When that, or the newest complete bucket, departs from the forecast by more than the
drift fraction *and* beyond Poisson noise, the load has moved: the forecast then runs over the
buckets since the move plus the last bucket width only, forgetting the old load. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

ALPHA = 0.5  # level smoothing: half the weight on the newest bucket
BETA = 0.3  # trend smoothing
SIGMAS = 3.0  # a shift must exceed this many standard deviations of a Poisson count
FLOOR_RPS = 0.2  # rates under this count as this (noise on idle classes is no shift)


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


def recent_rates(
    counts: Mapping[int, Mapping[str, int]], classes: Sequence[str], now_s: float, bucket_s: int
) -> dict[str, float]:
    """Rate per class over the last `bucket_s` seconds: the current bucket so far plus the
    matching tail of the previous one (arrivals taken as uniform within a bucket)."""
    current = int(now_s) // bucket_s * bucket_s
    prev_share = max(0.0, 1.0 - (now_s - current) / bucket_s)
    cur, prev = counts.get(current, {}), counts.get(current - bucket_s, {})
    return {c: (cur.get(c, 0) + prev_share * prev.get(c, 0)) / bucket_s for c in classes}


def shifted(
    base_rps: float, new_rps: float, fraction: float, span_s: float | None = None,
    floor_rps: float = FLOOR_RPS,
) -> bool:  # fmt: skip
    """Did the rate move by more than `fraction` of `base_rps`, and (given the `span_s` the new
    rate was counted over) by more than SIGMAS standard deviations of a Poisson count?"""
    base, new = max(base_rps, floor_rps), max(new_rps, floor_rps)
    if abs(new - base) <= fraction * base:
        return False
    return span_s is None or abs(new - base) * span_s > SIGMAS * math.sqrt(base * span_s + 1)


def estimate_rates(
    counts: Mapping[int, Mapping[str, int]], classes: Sequence[str], now_s: float,
    bucket_s: int, window_s: int, horizon_s: float, fraction: float,
) -> dict[str, float]:  # fmt: skip
    """Per class: the smoothed forecast while the load holds; once the last `bucket_s` of
    arrivals or the newest complete bucket has shifted from it, the forecast over only the
    buckets since the shift plus the last `bucket_s` (the window forgets the old load)."""
    series = bucket_series(counts, classes, now_s, bucket_s, window_s)
    recent = recent_rates(counts, classes, now_s, bucket_s)
    h = horizon_s / bucket_s
    out = {}
    for c in classes:
        xs, r = series[c], recent[c]
        smooth = holt(xs, h)
        moved = shifted(smooth, r, fraction, bucket_s) or bool(
            xs and shifted(smooth, xs[-1], fraction, bucket_s)
        )
        if not moved:
            out[c] = smooth
            continue
        since: list[float] = []
        for x in reversed(xs):  # newest first, back to the first bucket unlike the last 10 s
            if shifted(r, x, fraction, bucket_s):
                break
            since.insert(0, x)
        out[c] = holt([*since, r], h)
    return out


def drifted(
    planned: Mapping[str, float], now: Mapping[str, float], fraction: float,
    floor_rps: float = FLOOR_RPS, span_s: float | None = None,
) -> list[str]:  # fmt: skip
    """Classes whose rate moved by more than `fraction` of what the plan assumed (rates under
    `floor_rps` count as `floor_rps`, so noise on idle classes does not trigger re-plans; with
    `span_s`, only moves beyond Poisson noise of a count over that span)."""
    return [
        c for c, rate in now.items()
        if shifted(planned.get(c, 0.0), rate, fraction, span_s, floor_rps)
    ]  # fmt: skip

"""Outcome metrics, the same for real runs and simulations: SLO attainment, goodput, latency
percentiles, accuracy, mean τ and steps, per policy and class."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Outcome:
    req_id: str
    slo_class: str
    arrival_s: float
    status: str  # done | expired | rejected | failed | cancelled | lost
    e2e_ms: float | None = None
    queued_ms: float | None = None  # submit → first claimed by a worker
    slo_met: bool = False
    correct: bool | None = None  # None: not checkable
    mean_tau: float | None = None
    steps: int | None = None
    predicted_e2e_ms: float | None = None
    gateway_arrival_ms: float | None = None  # the gateway's arrival stamp (epoch ms)
    # That stamp after the planned arrival: an open loop that falls behind (a starved load
    # generator or gateway) offers less load than planned, and the report must say so.
    send_lag_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(outcomes: list[Outcome], duration_s: float) -> dict[str, Any]:
    """Attainment counts every request offered (rejected, expired and failed ones miss)."""
    if not outcomes:
        return {"num_requests": 0}
    lat = [o.e2e_ms for o in outcomes if o.status == "done" and o.e2e_ms is not None]
    queued = [o.queued_ms for o in outcomes if o.status == "done" and o.queued_ms is not None]
    checked = [o.correct for o in outcomes if o.status == "done" and o.correct is not None]
    taus = [o.mean_tau for o in outcomes if o.mean_tau is not None]
    steps = [o.steps for o in outcomes if o.steps is not None]
    met = sum(o.slo_met for o in outcomes)
    lags = [o.send_lag_ms for o in outcomes if o.send_lag_ms is not None]
    by_status: dict[str, int] = {}
    reasons: dict[str, int] = {}  # why requests were lost or refused: a fault shows here
    for o in outcomes:
        by_status[o.status] = by_status.get(o.status, 0) + 1
        if "reason" in o.extra:
            why = f"{o.status}: {str(o.extra['reason'])[:80]}"
            reasons[why] = reasons.get(why, 0) + 1
    return {
        "num_requests": len(outcomes),
        "attainment": met / len(outcomes),
        "goodput_rps": met / duration_s if duration_s > 0 else None,
        "p50_ms": percentile(lat, 0.5), "p90_ms": percentile(lat, 0.9),
        "p99_ms": percentile(lat, 0.99),
        "p50_queued_ms": percentile(queued, 0.5), "p90_queued_ms": percentile(queued, 0.9),
        "accuracy": sum(checked) / len(checked) if checked else None,
        "mean_tau": statistics.mean(taus) if taus else None,
        "mean_steps": statistics.mean(steps) if steps else None,
        "by_status": by_status,
        "reasons": reasons,
        "p50_send_lag_ms": percentile(lags, 0.5), "p99_send_lag_ms": percentile(lags, 0.99),
        "achieved_rps": achieved_rate(outcomes),
    }  # fmt: skip


def achieved_rate(outcomes: list[Outcome]) -> float | None:
    """Requests per second as really sent (planned arrival + send lag), first to last."""
    return rate_rps([o.arrival_s + o.send_lag_ms / 1e3
                     for o in outcomes if o.send_lag_ms is not None])  # fmt: skip


def rate_rps(times_s: list[float]) -> float | None:
    """Events per second from the first to the last of `times_s` (None: fewer than two)."""
    span_s = max(times_s, default=0.0) - min(times_s, default=0.0)
    return (len(times_s) - 1) / span_s if span_s > 0 else None


def by_class(outcomes: list[Outcome], duration_s: float) -> dict[str, dict[str, Any]]:
    classes = sorted({o.slo_class for o in outcomes})
    out = {c: summarize([o for o in outcomes if o.slo_class == c], duration_s) for c in classes}
    out["all"] = summarize(outcomes, duration_s)
    return out


def goodput_rate(points: list[tuple[float, float]], target: float = 0.9) -> float | None:
    """Highest offered rate whose attainment ≥ target, from (rate, attainment) points, linearly
    interpolated at the first crossing."""
    pts = sorted(points)
    best = None
    for (r0, a0), (r1, a1) in zip(pts, pts[1:], strict=False):
        if a0 >= target:
            best = r0
            if a1 < target:
                return r0 + (r1 - r0) * (a0 - target) / (a0 - a1)
    if pts and pts[-1][1] >= target:
        best = pts[-1][0]
    return best

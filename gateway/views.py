"""A request hash → what clients see on poll."""

from __future__ import annotations

from common.schemas import Progress, RequestStatus, RequestView, Timings


def _f(h: dict[str, str], name: str) -> float | None:
    raw = h.get(name)
    return float(raw) if raw not in (None, "") else None


def _i(h: dict[str, str], name: str) -> int:
    raw = h.get(name)
    return int(float(raw)) if raw else 0


def timings(h: dict[str, str]) -> Timings:
    arrival, claimed, finished = _f(h, "arrival_ms"), _f(h, "claimed_ms"), _f(h, "finished_ms")
    return Timings(
        queued_ms=claimed - arrival if claimed and arrival else None,
        run_ms=finished - claimed if finished and claimed else None,
        e2e_ms=finished - arrival if finished and arrival else None,
    )


def request_view(h: dict[str, str]) -> RequestView:
    status = RequestStatus(h["status"])
    finished, deadline = _f(h, "finished_ms"), _f(h, "deadline_ms") or 0.0
    taus = sorted({t for t in (_f(h, "tau_min"), _f(h, "tau_max")) if t is not None})
    return RequestView(
        id=h["id"],
        status=status,
        pool=h.get("pool", ""),
        slo_class=h.get("slo_class", ""),
        progress=Progress(
            steps=_i(h, "steps"),
            tokens_committed=_i(h, "tokens_committed"),
            tokens_total=_i(h, "tokens_total") or _i(h, "max_tokens"),
            block=_i(h, "block"),
        ),
        partial_text=h.get("partial", ""),
        text=h.get("text") if status is RequestStatus.DONE else None,
        error=h.get("error") or None,
        arrival_ms=_f(h, "arrival_ms") or 0.0,
        deadline_ms=deadline,
        timings=timings(h),
        slo_met=_slo_met(status, finished, deadline),
        thresholds=taus,
        worker=h.get("worker") or None,
        attempts=_i(h, "attempt"),
    )


def _slo_met(status: RequestStatus, finished_ms: float | None, deadline_ms: float) -> bool | None:
    """Met when done by the deadline; missed when done late or ended without an answer."""
    if status is RequestStatus.DONE and finished_ms:
        return finished_ms <= deadline_ms
    if status in (RequestStatus.EXPIRED, RequestStatus.FAILED, RequestStatus.REJECTED):
        return False
    return None

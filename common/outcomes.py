"""Finished requests as operators count them: one `Outcome` per entry of the finished stream.

Every Lua script that ends a request (complete, cancel, reap; any future one) appends
`(id, status)` to `keys.finished()` in the same atomic step, so each request is recorded exactly
once; the stream entry id is the finish time. The rest comes from the request hash, which lives
`result_ttl_s` after the end. The gateway folds the stream into Prometheus metrics and into
time-bucketed counts per class and pool (`keys.window`), which `dilaserve status`, the
dashboard and the planner read. Pure: no Redis here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

BUCKET_S = 10  # width of one window bucket
WINDOW_TTL_S = 3600  # buckets older than this disappear
ARRIVALS_TTL_S = 3600  # the gateway's arrival counters (keys.arrivals) live this long
WINDOWS_S = (60, 300)  # the windows status and the dashboard report
REQ_FIELDS = (
    "slo_class", "pool", "arrival_ms", "claimed_ms", "finished_ms", "deadline_ms", "steps",
    "tokens_committed", "tau_min",
)  # fmt: skip
UNKNOWN = "unknown"  # class or pool of a record whose hash has already expired
SLO_COUNTED = ("done", "failed", "expired")  # cancelled requests count neither way


@dataclass(frozen=True, slots=True)
class Outcome:
    req_id: str
    status: str  # done | failed | cancelled | expired
    slo_class: str
    pool: str
    finished_ms: float
    e2e_s: float | None  # arrival → end
    queue_s: float | None  # arrival → first claim
    run_s: float | None  # first claim → end
    steps: int
    tokens: int  # tokens committed
    tau_min: float | None  # lowest threshold any step of the request used
    slo_met: bool | None  # None: not counted (cancelled)

    @property
    def tokens_per_step(self) -> float | None:
        return self.tokens / self.steps if self.steps > 0 else None


def entry_ms(entry_id: str) -> float:
    """A stream entry id `<ms>-<seq>` → its time in epoch ms."""
    return float(entry_id.split("-", 1)[0])


def _f(h: Mapping[str, Any], name: str) -> float | None:
    raw = h.get(name)
    try:
        return float(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def _span_s(start: float | None, end: float | None) -> float | None:
    return (end - start) / 1000.0 if start is not None and end is not None else None


def _slo_met(status: str, finished_ms: float, deadline_ms: float | None) -> bool | None:
    if status not in SLO_COUNTED:
        return None
    if status != "done" or deadline_ms is None:
        return False
    return finished_ms <= deadline_ms


def outcome(entry_id: str, entry: Mapping[str, str], h: Mapping[str, Any]) -> Outcome:
    """One finished-stream entry plus the fields `REQ_FIELDS` of its request hash (maybe empty)."""
    status = entry.get("status") or UNKNOWN
    finished = _f(h, "finished_ms") or entry_ms(entry_id)
    arrival, claimed = _f(h, "arrival_ms"), _f(h, "claimed_ms")
    return Outcome(
        req_id=entry.get("id", ""),
        status=status,
        slo_class=h.get("slo_class") or UNKNOWN,
        pool=h.get("pool") or UNKNOWN,
        finished_ms=finished,
        e2e_s=_span_s(arrival, finished),
        queue_s=_span_s(arrival, claimed),
        run_s=_span_s(claimed, finished),
        steps=int(_f(h, "steps") or 0),
        tokens=int(_f(h, "tokens_committed") or 0),
        tau_min=_f(h, "tau_min"),
        slo_met=_slo_met(status, finished, _f(h, "deadline_ms")),
    )


# ---- window buckets: hash fields "<class>|<pool>|<label>" → count ----


def bucket_start_s(ms: float) -> int:
    return int(ms // 1000) // BUCKET_S * BUCKET_S


def window_buckets(now_ms: float, window_s: int) -> list[int]:
    """Start times of the buckets that cover the last `window_s` (the current one included)."""
    last = bucket_start_s(now_ms)
    return list(range(last - window_s + BUCKET_S, last + 1, BUCKET_S))


def window_fields(o: Outcome) -> list[str]:
    labels = [o.status]
    if o.slo_met is not None:
        labels.append("met" if o.slo_met else "missed")
    return [f"{o.slo_class}|{o.pool}|{label}" for label in labels]


@dataclass(slots=True)
class Attainment:
    finished: int = 0  # every end, cancelled included
    met: int = 0
    missed: int = 0
    by_status: dict[str, int] | None = None

    @property
    def ratio(self) -> float | None:
        counted = self.met + self.missed
        return self.met / counted if counted else None

    def to_dict(self) -> dict[str, Any]:
        return {"finished": self.finished, "met": self.met, "missed": self.missed,
                "attainment": self.ratio, "by_status": self.by_status or {}}  # fmt: skip


def attainment_by(buckets: Iterable[Mapping[str, str]], part: int = 0) -> dict[str, Attainment]:
    """Sum buckets per class (`part=0`) or per pool (`part=1`)."""
    out: dict[str, Attainment] = {}
    for bucket in buckets:
        for name, raw in bucket.items():
            fields = name.split("|")
            if len(fields) != 3:
                continue
            a = out.setdefault(fields[part], Attainment(by_status={}))
            _add(a, fields[2], int(raw))
    return out


def _add(a: Attainment, label: str, n: int) -> None:
    if label == "met":
        a.met += n
    elif label == "missed":
        a.missed += n
    else:
        a.finished += n
        assert a.by_status is not None
        a.by_status[label] = a.by_status.get(label, 0) + n

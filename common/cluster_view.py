"""The cluster picture read straight from Redis: pools, workers, the plan, attainment windows and
the requests in flight. One shape for `dilaserve status --json`, `GET /v1/cluster`, the dashboard
and the gateway's cluster gauges.

Reading takes two or three pipelined round trips and never scans the keyspace: the sets of pools
and workers name what to read. The same `queue_*` functions fill a sync pipeline (status) or an
asyncio one (gateway); `build_view` is pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from common.bus_calls import STATS_COUNTERS
from common.keys import Keys
from common.outcomes import BUCKET_S, WINDOWS_S, attainment_by, entry_ms, window_buckets

REQ_VIEW_FIELDS = (
    "id", "status", "pool", "slo_class", "steps", "tokens_committed", "tokens_total",
    "max_tokens", "block", "block_length", "partial", "deadline_ms", "arrival_ms", "worker",
    "tau_min", "tau_max", "finished_ms", "prompt",
)  # fmt: skip
MAX_INFLIGHT = 50  # requests in flight a view lists at most (running first, then queue heads)
MAX_RECENT = 12  # recently finished requests a view lists


@dataclass(slots=True)
class Raw:
    """What the round trips returned, before any interpretation."""

    now_ms: float
    pools: set[str] = field(default_factory=set)
    worker_ids: set[str] = field(default_factory=set)
    plan: str | None = None
    plan_changed: list[Any] = field(default_factory=list)  # XREVRANGE plan_log COUNT 1
    counters: dict[str, str] = field(default_factory=dict)
    buckets: dict[int, dict[str, str]] = field(default_factory=dict)
    queues: dict[str, tuple[int, float | None]] = field(default_factory=dict)  # len, head score
    workers: dict[str, dict[str, str]] = field(default_factory=dict)
    running_ids: list[str] = field(default_factory=list)
    queued_ids: list[str] = field(default_factory=list)
    recent: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # finished entries
    requests: dict[str, dict[str, str]] = field(default_factory=dict)


# ---- round trip 1: the sets, the plan, counters, window buckets, in-flight ids ----


def _bucket_ids(now_ms: float) -> list[int]:
    return window_buckets(now_ms, max(WINDOWS_S))


def queue_first(pipe: Any, keys: Keys, now_ms: float, with_requests: bool) -> None:
    pipe.smembers(keys.pools())
    pipe.smembers(keys.workers())
    pipe.get(keys.plan())
    pipe.xrevrange(keys.plan_log(), count=1)
    pipe.hgetall(keys.stats(STATS_COUNTERS))
    for b in _bucket_ids(now_ms):
        pipe.hgetall(keys.window(b))
    if with_requests:
        pipe.zrange(keys.lease(), 0, MAX_INFLIGHT - 1)
        pipe.xrevrange(keys.finished(), count=MAX_RECENT)


def parse_first(raw: Raw, replies: list[Any], with_requests: bool) -> None:
    raw.pools, raw.worker_ids, raw.plan, raw.plan_changed, raw.counters = (
        set(replies[0]), set(replies[1]), replies[2], list(replies[3]), dict(replies[4])
    )  # fmt: skip
    ids = _bucket_ids(raw.now_ms)
    raw.buckets = {b: dict(h) for b, h in zip(ids, replies[5 : 5 + len(ids)], strict=True)}
    if with_requests:
        rest = replies[5 + len(ids) :]
        raw.running_ids = list(rest[0])
        raw.recent = [(eid, dict(f)) for eid, f in rest[1]]


# ---- round trip 2: per pool and per worker; queue heads ----


def queue_second(pipe: Any, keys: Keys, raw: Raw, with_requests: bool) -> None:
    for pool in sorted(raw.pools):
        pipe.zcard(keys.queue(pool))
        pipe.zrange(keys.queue(pool), 0, 0, withscores=True)
    for wid in sorted(raw.worker_ids):
        pipe.hgetall(keys.worker(wid))
    num_heads = min(10, MAX_INFLIGHT - len(raw.running_ids)) if with_requests else 0
    if num_heads > 0:
        for pool in sorted(raw.pools):
            pipe.zrange(keys.queue(pool), 0, num_heads - 1)


def parse_second(raw: Raw, replies: list[Any]) -> None:
    pools = sorted(raw.pools)
    for i, pool in enumerate(pools):
        head = replies[2 * i + 1]
        raw.queues[pool] = (int(replies[2 * i]), float(head[0][1]) if head else None)
    off = 2 * len(pools)
    for j, wid in enumerate(sorted(raw.worker_ids)):
        raw.workers[wid] = dict(replies[off + j])
    for ids in replies[off + len(raw.worker_ids) :]:
        raw.queued_ids.extend(ids)


# ---- round trip 3: the request hashes the view lists ----


def request_ids(raw: Raw) -> list[str]:
    ids = raw.running_ids + raw.queued_ids + [f.get("id", "") for _, f in raw.recent]
    return list(dict.fromkeys(i for i in ids if i))


def queue_third(pipe: Any, keys: Keys, ids: list[str]) -> None:
    for req_id in ids:
        pipe.hmget(keys.req(req_id), REQ_VIEW_FIELDS)


def parse_third(raw: Raw, ids: list[str], replies: list[Any]) -> None:
    for req_id, values in zip(ids, replies, strict=True):
        h = {k: v for k, v in zip(REQ_VIEW_FIELDS, values, strict=True) if v is not None}
        if h:
            raw.requests[req_id] = h


def read_sync(client: Any, keys: Keys, now_ms: float, with_requests: bool = False) -> Raw:
    raw = Raw(now_ms)
    pipe = client.pipeline(transaction=False)
    queue_first(pipe, keys, now_ms, with_requests)
    parse_first(raw, pipe.execute(), with_requests)
    pipe = client.pipeline(transaction=False)
    queue_second(pipe, keys, raw, with_requests)
    parse_second(raw, pipe.execute())
    ids = request_ids(raw) if with_requests else []
    if ids:
        pipe = client.pipeline(transaction=False)
        queue_third(pipe, keys, ids)
        parse_third(raw, ids, pipe.execute())
    return raw


async def read_async(client: Any, keys: Keys, now_ms: float, with_requests: bool = False) -> Raw:
    raw = Raw(now_ms)
    pipe = client.pipeline(transaction=False)
    queue_first(pipe, keys, now_ms, with_requests)
    parse_first(raw, await pipe.execute(), with_requests)
    pipe = client.pipeline(transaction=False)
    queue_second(pipe, keys, raw, with_requests)
    parse_second(raw, await pipe.execute())
    ids = request_ids(raw) if with_requests else []
    if ids:
        pipe = client.pipeline(transaction=False)
        queue_third(pipe, keys, ids)
        parse_third(raw, ids, await pipe.execute())
    return raw


# ---- the view ----


def _num(h: dict[str, str], name: str, default: float = 0.0) -> float:
    try:
        return float(h.get(name) or default)
    except ValueError:
        return default


def _opt(h: dict[str, str], name: str) -> float | None:
    return _num(h, name) if h.get(name) else None


def parse_plan(text: str | None) -> dict[str, Any] | None:
    """The published plan (JSON), whatever extra fields it has; None when there is none."""
    if not text:
        return None
    try:
        plan = json.loads(text)
    except ValueError:
        return {"error": "unparseable plan"}
    return plan if isinstance(plan, dict) else {"error": "plan is not an object"}


def worker_view(wid: str, h: dict[str, str], now_ms: float) -> dict[str, Any]:
    ts = _num(h, "ts_ms")
    return {
        "id": wid,
        "pool": h.get("pool", ""),
        "tp_rank": int(_num(h, "tp_rank")),
        "tp_degree": int(_num(h, "tp_degree", 1)),
        "heartbeat_age_s": round((now_ms - ts) / 1000.0, 3) if ts else None,
        "batch_size": int(_num(h, "batch_size")),
        "held": int(_num(h, "held")),
        "utilisation": _num(h, "utilisation"),
        "num_steps": int(_num(h, "num_steps")),
        "busy_s": _num(h, "busy_s"),
        "forward_s": _num(h, "forward_s"),
        "tau": _opt(h, "tau"),
        "tau_floor": _opt(h, "tau_floor"),
        "max_batch_size": int(_num(h, "max_batch_size")) or None,
        "claiming": h.get("claiming", "1") == "1",
        "policy": h.get("policy") or None,
        "service_rate_rps": _opt(h, "service_rate_rps"),
        # median |predicted − measured| / measured of the cost model, over a rolling window
        "step_prediction_error": _opt(h, "cost_step_median_abs_error"),
        "completion_prediction_error": _opt(h, "cost_completion_median_abs_error"),
    }


def _plan_pools(plan: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    pools = (plan or {}).get("pools") or []
    return {str(p.get("pool_id", p.get("name", ""))): p for p in pools if isinstance(p, dict)}


def pool_view(
    name: str, raw: Raw, workers: list[dict[str, Any]], planned: dict[str, Any] | None
) -> dict[str, Any]:
    qlen, head = raw.queues.get(name, (0, None))
    mine = [w for w in workers if w["pool"] == name]
    taus = sorted({w["tau"] for w in mine if w["tau"] is not None})
    tps = sorted({w["tp_degree"] for w in mine})
    return {
        "name": name,
        "queue_len": qlen,
        "oldest_deadline_ms": head,
        "oldest_slack_s": round((head - raw.now_ms) / 1000.0, 3) if head is not None else None,
        "num_workers": len(mine),
        "num_running": sum(w["held"] for w in mine),
        "tp_degree": (planned or {}).get("tp") or (tps[0] if tps else None),
        "tau": (planned or {}).get("tau") or (taus[0] if taus else None),
        "tau_floor": (planned or {}).get("tau_floor"),
        "planned_instances": (planned or {}).get("num_instances"),
    }


def request_view(h: dict[str, str], now_ms: float) -> dict[str, Any]:
    deadline = _num(h, "deadline_ms")
    total = int(_num(h, "tokens_total") or _num(h, "max_tokens"))
    until = _num(h, "finished_ms") or now_ms  # a finished request's slack is final
    return {
        "id": h.get("id", ""),
        "status": h.get("status", ""),
        "pool": h.get("pool", ""),
        "slo_class": h.get("slo_class", ""),
        "steps": int(_num(h, "steps")),
        "tokens_committed": int(_num(h, "tokens_committed")),
        "tokens_total": total,
        "block": int(_num(h, "block")),
        "block_length": int(_num(h, "block_length")),
        "partial": h.get("partial", ""),
        "prompt": h.get("prompt", "")[:200],
        "deadline_ms": deadline,
        "slack_s": round((deadline - until) / 1000.0, 3) if deadline else None,
        "worker": h.get("worker") or None,
        "tau_min": _num(h, "tau_min") if h.get("tau_min") else None,
        "tau_max": _num(h, "tau_max") if h.get("tau_max") else None,
    }


def _windows(raw: Raw) -> dict[str, dict[str, Any]]:
    """class → {"60s": attainment, "300s": …} over the window buckets."""
    out: dict[str, dict[str, Any]] = {}
    for w in WINDOWS_S:
        ids = window_buckets(raw.now_ms, w)
        per_class = attainment_by([raw.buckets.get(b, {}) for b in ids])
        for cls, a in per_class.items():
            out.setdefault(cls, {})[f"{w}s"] = a.to_dict()
    return out


def _plan_view(raw: Raw) -> dict[str, Any] | None:
    plan = parse_plan(raw.plan)
    if plan is None:
        return None
    changed = entry_ms(raw.plan_changed[0][0]) if raw.plan_changed else None
    if changed is None and isinstance(plan.get("created_ms"), int | float):
        changed = float(plan["created_ms"])
    plan["changed_ms"] = changed
    plan["age_s"] = round((raw.now_ms - changed) / 1000.0, 3) if changed else None
    return plan


def build_view(raw: Raw, slo_classes: list[str] | None = None) -> dict[str, Any]:
    now = raw.now_ms
    alive = {w: h for w, h in raw.workers.items() if h}
    workers = [worker_view(w, h, now) for w, h in sorted(alive.items())]
    plan = _plan_view(raw)
    planned = _plan_pools(plan)
    names = sorted(raw.pools | {w["pool"] for w in workers} | set(planned))
    classes = _windows(raw)
    for cls in slo_classes or []:
        classes.setdefault(cls, {})
    running = [raw.requests[i] for i in raw.running_ids if i in raw.requests]
    queued = [raw.requests[i] for i in raw.queued_ids if i in raw.requests]
    recent = [raw.requests[f.get("id", "")] for _, f in raw.recent
              if f.get("id", "") in raw.requests]  # fmt: skip
    return {
        "ts_ms": now,
        "bucket_s": BUCKET_S,
        "plan": plan,
        "pools": [pool_view(p, raw, workers, planned.get(p)) for p in names],
        "workers": workers,
        "num_workers_gone": len(raw.worker_ids) - len(alive),
        "classes": classes,
        "counters": {k: int(_num(raw.counters, k)) for k in sorted(raw.counters)},
        "requests": [request_view(h, now) for h in running + queued],
        "recent": [request_view(h, now) for h in recent],
    }

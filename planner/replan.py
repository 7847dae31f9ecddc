"""The planner's Redis-side jobs, each safe to run twice: re-plan, watch for drift, reap,
housekeeping. planner/tasks.py wraps them as Celery tasks; tests call them directly too.

Re-plan: read inputs (planner/feed.py) → solve (planner/solve.py) → assign slots → publish the
plan only if it differs from the current one (planner/publish.py). One re-plan at a time (a Redis
lock with a TTL). A failed or timed-out solve publishes nothing: the current plan stays, and
the reason is in the status hash `keys.stats("planner")`, next to the predicted attainment and
accuracy, the solve time and the rates the plan assumed.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from common.bus import Bus
from common.config import Settings
from common.keys import Keys
from common.outcomes import BUCKET_S
from common.plan_bus import PLAN_LOG_MAXLEN, publish_plan, read_plan
from common.rehome import rehome_retired
from planner.assign import assign
from planner.decision import PlanDecision, PlanStatus
from planner.feed import read_counts, read_profiles, read_slots
from planner.forecast import drifted, estimate_rates
from planner.headroom import fill_idle
from planner.inputs import PlannerInput, SloClass
from planner.publish import current_state, differs, to_cluster_plan
from planner.solve import SolveOptions, plan

FINISHED_KEEP_MS = 3_600_000  # finished-stream entries older than this are trimmed


def status_key(keys: Keys) -> str:
    """hash: the last re-plan: status, reason, times, predictions, assumed rates."""
    return keys.stats("planner")


def rates_now(
    client: redis.Redis, keys: Keys, s: Settings, now_ms: float
) -> tuple[dict[str, float], str]:
    counts, source = read_counts(client, keys, now_ms, s.planner.window_s)
    names = [c.name for c in s.slo_classes]
    p = s.planner
    rates = estimate_rates(counts, names, now_ms / 1000, BUCKET_S, p.window_s,
                           horizon_s=p.replan_period_s, fraction=p.drift_fraction)  # fmt: skip
    return rates, source


def replan_once(
    client: redis.Redis, keys: Keys, s: Settings, force: bool = False, now_ms: float | None = None
) -> dict[str, Any]:
    lock, token = keys.stats("planner:lock"), uuid.uuid4().hex
    if not client.set(lock, token, nx=True, px=int(s.planner.lock_ttl_s * 1000)):
        return {"skipped": "another re-plan holds the lock"}
    try:
        return _replan(client, keys, s, force, now_ms if now_ms is not None else time.time() * 1000)
    finally:
        if client.get(lock) == token:  # the lock outlived us only if its TTL fired meanwhile
            client.delete(lock)


def _replan(
    client: redis.Redis, keys: Keys, s: Settings, force: bool, now_ms: float
) -> dict[str, Any]:
    rates, source = rates_now(client, keys, s, now_ms)
    slots = read_slots(client, keys)
    if not slots:
        return _record(client, keys, {"status": "skipped", "reason": "no live slots"}, rates)
    old = read_plan(client, keys)
    now = current_state(old, s.engine.max_batch_size)
    cost, quality, profiles = read_profiles(client, keys, s.engine.model_dir)
    nodes: dict[str, int] = {}
    for slot in slots:
        nodes[slot.node] = nodes.get(slot.node, 0) + 1
    inp = PlannerInput(
        classes=tuple(SloClass(c.name, c.slo_ms, rates[c.name], c.weight, c.tau_floor)
                      for c in s.slo_classes),
        gpus_per_node=tuple(nodes[n] for n in sorted(nodes)), cost_model=cost, quality=quality,
        tp_degrees=tuple(s.planner.tp_degrees), batch_sizes=tuple(s.planner.batch_sizes),
        accuracy_budget_pts=s.planner.accuracy_budget_pts, current=now.counts,
        current_routing=now.routing,
    )  # fmt: skip
    previous = _previous(client, keys)
    d = plan(inp, previous, SolveOptions(time_limit_s=s.planner.time_limit_s))
    info: dict[str, Any] = {"rate_source": source, "profiles": profiles, **_summary(d)}
    if d.status not in (PlanStatus.OPTIMAL, PlanStatus.FEASIBLE):
        return _record(client, keys, info, rates)
    if s.planner.fill_idle:
        d = fill_idle(d, inp)
    a = assign(slots, now.groups, d.pools)
    new = to_cluster_plan(d, a, now.labels, rates)
    if force or differs(new, old, s.planner.routing_tolerance):
        info["version"] = publish_plan(client, keys, new).version
        info["moved_slots"] = len(a.moved_slot_ids)
    else:
        info["version"] = old.version if old else 0
        info["unchanged"] = True
    client.set(keys.stats("planner:decision"), d.to_json())
    return _record(client, keys, info, rates)


def _summary(d: PlanDecision) -> dict[str, Any]:
    return {
        "status": str(d.status), "reason": d.reason, "solve_ms": round(d.solve_ms, 1),
        "build_ms": round(d.build_ms, 1), "attainment": d.attainment, "accuracy": d.accuracy,
        "shed": d.shed, "gap": d.gap,
    }  # fmt: skip


def _previous(client: redis.Redis, keys: Keys) -> PlanDecision | None:
    raw = client.get(keys.stats("planner:decision"))
    try:
        return PlanDecision.from_json(str(raw)) if raw else None
    except (ValueError, TypeError, KeyError):
        return None


def _record(
    client: redis.Redis, keys: Keys, info: dict[str, Any], rates: dict[str, float]
) -> dict[str, Any]:
    info = {**info, "rates": rates, "at_ms": time.time() * 1000}
    client.hset(status_key(keys), mapping={k: json.dumps(v) for k, v in info.items()})
    return info


def watch_once(client: redis.Redis, keys: Keys, s: Settings) -> list[str]:
    """Classes whose rate drifted from what the last plan assumed (empty: nothing to do)."""
    raw = client.hget(status_key(keys), "rates")
    planned = json.loads(raw) if raw else {}
    rates, _ = rates_now(client, keys, s, time.time() * 1000)
    if not planned:
        return list(rates)
    return drifted(planned, rates, s.planner.drift_fraction, span_s=BUCKET_S)


def reap_once(client: redis.Redis, s: Settings) -> tuple[int, int, int]:
    """Re-queue requests whose lease expired (their worker died), failing them past the
    retries; move anything still queued for a pool the plan retired (common/rehome.py: the
    publisher already did, this catches a publisher that died in between).
    → (requeued, failed, moved)."""
    bus = Bus(s.redis, client)
    requeued, failed = bus.reap(max_failures=s.worker.max_retries)
    return requeued, failed, rehome_retired(client, bus.calls)


def housekeeping_once(
    client: redis.Redis, keys: Keys, now_ms: float | None = None
) -> dict[str, int]:
    """Drop registry entries whose hashes expired, queue entries whose request is gone, old
    finished-stream entries; cap the plan log."""
    now = now_ms if now_ms is not None else time.time() * 1000
    out = {
        "slots": _prune_set(client, keys.slots(), keys.slot),
        "workers": _prune_set(client, keys.workers(), keys.worker),
        "queued": sum(_prune_queue(client, keys, str(p)) for p in client.smembers(keys.pools())),
    }
    out["finished"] = int(client.xtrim(keys.finished(), minid=int(now - FINISHED_KEEP_MS)))
    out["plan_log"] = int(client.xtrim(keys.plan_log(), maxlen=PLAN_LOG_MAXLEN, approximate=False))
    return out


def _prune_set(client: redis.Redis, set_key: str, member_key: Any) -> int:
    members = sorted(client.smembers(set_key))
    pipe = client.pipeline(transaction=False)
    for m in members:
        pipe.exists(member_key(m))
    gone = [m for m, alive in zip(members, pipe.execute(), strict=True) if not alive]
    return int(client.srem(set_key, *gone)) if gone else 0


def _prune_queue(client: redis.Redis, keys: Keys, pool: str) -> int:
    ids = [str(r) for r in client.zrange(keys.queue(pool), 0, -1)]
    pipe = client.pipeline(transaction=False)
    for req_id in ids:
        pipe.exists(keys.req(req_id))
    gone = [r for r, alive in zip(ids, pipe.execute(), strict=True) if not alive]
    return int(client.zrem(keys.queue(pool), *gone)) if gone else 0

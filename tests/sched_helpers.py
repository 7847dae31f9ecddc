"""Factories for scheduler tests: a synthetic cost model and quality profile, a virtual-time
driver around Scheduler + SimRunner."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.costmodel import Coeffs, CostModel
from common.quality import QualityPoint, QualityProfile
from loadgen.sim.runner import SimRunner
from workers.sched.plan import CacheMode, ThresholdRule
from workers.sched.policy import PolicyCfg
from workers.sched.scheduler import Scheduler, SchedulerConfig
from workers.sched.state import SeqRequest, SeqUpdate

MASK, EOS = 3, 2
CURVE = [
    (1.0, 0.99, 1.0),
    (0.9, 0.985, 2.5),
    (0.8, 0.97, 3.0),
    (0.7, 0.95, 3.6),
    (0.6, 0.92, 4.2),
    (0.5, 0.85, 5.0),
]


def make_profile() -> QualityProfile:
    pts = [QualityPoint(t, a, tps, 64 / tps) for t, a, tps in CURVE]
    return QualityProfile("synthetic", 64, 16, 500, {"dual": pts, "none": pts, "prefix": pts})


def make_cost() -> CostModel:
    # A refresh costs several times a reuse: full 2 ms + 0.05 ms/token, reuse 1 ms + 0.02 ms/token.
    return CostModel({1: Coeffs(full=[2.0, 0.0, 0.05, 0.0], reuse=[1.0, 0.0, 0.02, 0.0])})


def make_request(
    i: int, deadline_ms: float, arrival_ms: float = 0.0, tau: float = 0.9, floor: float = 0.5,
    late_action: str = "serve", gen: int = 64,
) -> SeqRequest:  # fmt: skip
    canvas = [5] * 16 + [MASK] * gen
    return SeqRequest(
        f"r{i}", canvas, 16, 16, deadline_ms, ThresholdRule(tau), CacheMode.DUAL,
        arrival_ms=arrival_ms, tau_floor=floor, late_action=late_action,
    )  # fmt: skip


def make_scheduler(policy: str = "dilaserve", max_batch: int = 8) -> Scheduler:
    cfg = SchedulerConfig(MASK, EOS, max_batch, policy=PolicyCfg(name=policy))
    return Scheduler(cfg, make_cost(), make_profile())


@dataclass
class Trace:
    decisions: list[tuple[int, str, str, float | None]] = field(default_factory=list)
    updates: list[SeqUpdate] = field(default_factory=list)
    finish_ms: dict[str, float] = field(default_factory=dict)


def drive(
    sched: Scheduler, arrivals: list[SeqRequest], seed: int = 0, max_steps: int = 10_000,
    on_step=None,  # noqa: ANN001 - callback(sched, now_ms) checked after each schedule()
) -> Trace:  # fmt: skip
    """Virtual-time loop: requests arrive at arrival_ms; each step advances time by its cost."""
    runner = SimRunner(make_cost(), make_profile(), MASK, seed)
    pending = sorted(arrivals, key=lambda r: r.arrival_ms)
    late_lane: list[SeqRequest] = []  # handed back as late: re-offered when nothing else waits
    now, trace = 0.0, Trace()
    for step in range(max_steps):
        while pending and pending[0].arrival_ms <= now:
            sched.add(pending.pop(0))
        if late_lane and not sched.waiting:
            sched.add(late_lane.pop(0))
        if not sched.has_work:
            if not pending:
                break
            now = pending[0].arrival_ms
            continue
        plan = sched.schedule(now)
        if on_step:
            on_step(sched, now)
        for s in plan.steps:
            tau = s.rule.tau if isinstance(s.rule, ThresholdRule) else None
            trace.decisions.append((step, s.req_id, s.phase.value, tau))
        result = runner.execute(plan)
        now += result.step_s * 1e3
        for u in sched.update(plan, result, now):
            trace.updates.append(u)
            if u.finished:
                trace.finish_ms[u.req_id] = now
            if u.handed_back:
                st = sched.seqs[u.req_id]
                st.req.canvas = list(st.canvas)
                sched.forget(u.req_id)
                late_lane.append(st.req)
    return trace

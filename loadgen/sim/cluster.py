"""Discrete-event cluster simulator: instances run the real scheduling core over SimRunner.

Each instance is a Scheduler (the workers' own, same policy code) plus a SimRunner. Requests
wait in their pool's deadline-ordered queue (as in Redis) and an instance claims as many as it
has free slots whenever it is between steps — the same claim rule as the real worker. Virtual
time jumps from event to event, so thousands of GPUs simulate in seconds.
"""

from __future__ import annotations

import bisect
import copy
import heapq
import time
from dataclasses import dataclass, field

from common.bus_calls import LATE_LANE_MS
from common.costmodel import CostModel
from common.quality import QualityProfile
from loadgen.metrics import Outcome
from loadgen.sim.runner import SimRunner
from workers.sched.plan import CacheMode, ThresholdRule
from workers.sched.policy import PolicyCfg
from workers.sched.scheduler import Scheduler, SchedulerConfig
from workers.sched.state import SeqRequest

MASK, EOS = 3, 2


@dataclass(slots=True, frozen=True)
class SimRequest:
    req_id: str
    arrival_ms: float
    slo_ms: float
    slo_class: str
    prompt_len: int
    gen_length: int
    block_length: int = 16
    tau: float = 0.9
    tau_floor: float = 0.5
    late_action: str = "serve"


@dataclass(slots=True)
class CoreTiming:
    """Host CPU time the scheduling core (schedule + update) spent per step: the cost a policy
    adds to every step on a real worker, where steps on a GPU may take only tens of ms."""

    steps: int = 0
    core_s: float = 0.0

    @property
    def us_per_step(self) -> float:
        return 1e6 * self.core_s / self.steps if self.steps else 0.0


@dataclass
class _Instance:
    sched: Scheduler
    runner: SimRunner
    free_at_ms: float = 0.0
    taus: dict[str, list[float]] = field(default_factory=dict)


@dataclass(slots=True)
class SimConfig:
    num_instances: int
    policy: PolicyCfg
    max_batch_size: int = 16
    tp: int = 1
    seed: int = 0
    queue_by_arrival: bool = False  # fcfs baselines read the queue in arrival order
    # Claims skip requests whose deadline is closer than this (they cannot make it even alone
    # at the floor) and move them to the best-effort lane; 0 disables (the fixed baselines).
    min_service_ms: float = 0.0
    slowdown: float = 1.0  # true step times = the cost model's × this (SimRunner)
    jitter: float = 0.0  # and × a median-1 log-normal factor of this σ


def simulate(
    cfg: SimConfig, cost: CostModel, profile: QualityProfile, requests: list[SimRequest],
    timing: CoreTiming | None = None,
) -> list[Outcome]:  # fmt: skip
    sched_cfg = SchedulerConfig(MASK, EOS, cfg.max_batch_size, policy=cfg.policy)
    # Each scheduler corrects its own copy of the model online, as each worker does; the
    # runners' truth stays the model as given (times slowdown and jitter).
    truth = copy.deepcopy(cost)
    insts = [
        _Instance(
            Scheduler(sched_cfg, copy.deepcopy(cost), profile),
            SimRunner(truth, profile, MASK, cfg.seed + i, cfg.tp, cfg.slowdown, cfg.jitter),
        )
        for i in range(cfg.num_instances)
    ]
    by_id = {r.req_id: r for r in requests}
    arrivals = sorted(requests, key=lambda r: r.arrival_ms)
    queue: list[tuple[float, str]] = []  # (deadline or arrival, id), sorted
    outcomes: dict[str, Outcome] = {}
    events = [(inst.free_at_ms, i) for i, inst in enumerate(insts)]
    heapq.heapify(events)
    nxt = 0
    while events:
        now, i = heapq.heappop(events)
        while nxt < len(arrivals) and arrivals[nxt].arrival_ms <= now:
            r = arrivals[nxt]
            key = r.arrival_ms if cfg.queue_by_arrival else r.arrival_ms + r.slo_ms
            bisect.insort(queue, (key, r.req_id))
            nxt += 1
        inst = insts[i]
        inst.sched.queue_depth = len(queue)
        if cfg.min_service_ms:
            _triage(queue, now + cfg.min_service_ms, by_id)
        _claim(inst, queue, by_id)
        if not inst.sched.has_work:
            if nxt >= len(arrivals) and not queue:
                continue  # this instance is done for good
            wake = arrivals[nxt].arrival_ms if nxt < len(arrivals) else now
            heapq.heappush(events, (max(wake, now + 1e-6), i))
            continue
        heapq.heappush(events, (_step(inst, now, by_id, outcomes, queue, timing), i))
    return [
        outcomes.get(r.req_id) or Outcome(r.req_id, r.slo_class, r.arrival_ms / 1e3, "lost")
        for r in requests
    ]


def _claim(inst: _Instance, queue: list[tuple[float, str]], by_id: dict[str, SimRequest]) -> None:
    room = inst.sched.num_free_slots - len(inst.sched.waiting)
    for _ in range(max(0, min(room, len(queue)))):
        _, req_id = queue.pop(0)
        inst.sched.add(_seq_request(by_id[req_id]))


def _triage(queue: list[tuple[float, str]], cutoff_ms: float, by_id: dict[str, SimRequest]) -> None:
    """Move on-time-lane entries whose deadline is before `cutoff_ms` to the late lane."""
    moved = []
    while queue and queue[0][0] < cutoff_ms:
        moved.append(queue.pop(0))
    for key, req_id in moved:
        bisect.insort(queue, (key + LATE_LANE_MS, req_id))


def _seq_request(r: SimRequest) -> SeqRequest:
    canvas = [5] * r.prompt_len + [MASK] * r.gen_length
    return SeqRequest(
        r.req_id, canvas, r.prompt_len, r.block_length, r.arrival_ms + r.slo_ms,
        ThresholdRule(r.tau), CacheMode.DUAL, arrival_ms=r.arrival_ms,
        tau_floor=r.tau_floor, late_action=r.late_action, slo_class=r.slo_class,
    )  # fmt: skip


def _step(
    inst: _Instance,
    now: float,
    by_id: dict[str, SimRequest],
    outcomes: dict[str, Outcome],
    queue: list[tuple[float, str]],
    timing: CoreTiming | None,
) -> float:
    start = time.perf_counter()
    plan = inst.sched.schedule(now)
    core_s = time.perf_counter() - start
    for s in plan.steps:
        if isinstance(s.rule, ThresholdRule):
            inst.taus.setdefault(s.req_id, []).append(s.rule.tau)
    result = inst.runner.execute(plan)
    end = now + max(result.step_s * 1e3, 1e-3)
    start = time.perf_counter()
    updates = inst.sched.update(plan, result, end)
    if timing is not None:
        timing.steps += 1
        timing.core_s += core_s + time.perf_counter() - start
    for u in updates:
        r = by_id[u.req_id]
        if u.handed_back:  # deferred as late: back to the pool's queue, behind on-time work
            bisect.insort(queue, (r.arrival_ms + r.slo_ms + LATE_LANE_MS * u.late, r.req_id))
            inst.sched.forget(u.req_id)
            continue
        if u.finished or u.expired or u.failed:
            e2e = end - r.arrival_ms
            taus = inst.taus.pop(u.req_id, [])
            status = "done" if u.finished else ("expired" if u.expired else "failed")
            outcomes[u.req_id] = Outcome(
                u.req_id, r.slo_class, r.arrival_ms / 1e3, status, e2e,
                slo_met=u.finished and e2e <= r.slo_ms,
                mean_tau=sum(taus) / len(taus) if taus else None, steps=u.steps,
            )  # fmt: skip
            inst.sched.forget(u.req_id)
    return end

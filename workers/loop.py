"""The worker's hot loop: drain inbox → schedule → execute → update → publish.

Runs on the main thread; Redis lives behind `WorkerIO`'s queues. Policy (admission order, τ per
step, refresh or reuse) is the scheduler's; this file only moves requests in and results out.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from common.bus import now_ms
from common.config import SloClassCfg
from common.schemas import WorkItem
from workers.io import CancelMsg, WorkerIO
from workers.outbox import Out, OutKind
from workers.sched.plan import StepPlan, ThresholdRule
from workers.sched.scheduler import Scheduler
from workers.sched.state import SeqRequest, SeqStatus, SeqUpdate
from workers.tuning import PoolTuning

log = logging.getLogger(__name__)


RATE_WINDOW_S = 20.0  # the service rate a worker reports is measured over this window


@dataclass(slots=True)
class LoopStats:
    finished_at_s: deque[float] = field(default_factory=deque)  # monotonic finish times
    num_steps: int = 0
    forward_s: float = 0.0  # inside runner.execute
    busy_s: float = 0.0  # wall time of steps (schedule + execute + update + publish hand-off)
    started_s: float = field(default_factory=time.perf_counter)


@dataclass(slots=True)
class _Meta:
    attempt: int
    pool: str
    prompt_len: int
    block_length: int
    stop: list[str]
    min_threshold: float  # the client's quality floor: lifts τ and its floor above the pool's
    own_floor: float  # max of the class's τ floor and min_threshold


class WorkerLoop:
    def __init__(
        self,
        sched: Scheduler,
        runner: Any,
        io: WorkerIO,
        mask_id: int,
        tau: float,
        drain_timeout_s: float,
        step_delay_s: float = 0.0,
        classes: dict[str, SloClassCfg] | None = None,
    ) -> None:
        self.sched, self.runner, self.io = sched, runner, io
        self.mask_id, self.tau, self.drain_timeout_s = mask_id, tau, drain_timeout_s
        self.classes = classes or {}
        self.step_delay_s = step_delay_s
        self.tau_floor = 0.0  # the pool's τ floor (plan): no request steps below it
        self.meta: dict[str, _Meta] = {}
        self.stats = LoopStats()
        self._drain_deadline: float | None = None
        self._tuning: PoolTuning | None = None  # set by a plan watcher, applied by the loop

    def run(self, stop: threading.Event) -> int:
        """Serve until `stop` is set, then drain: hand everything back at block boundaries."""
        while True:
            if self._tuning is not None:
                self._retune()
            if stop.is_set() and self._drain_deadline is None:
                self._begin_drain()
            self._drain_inbox(block_s=0.0 if self.sched.has_work else 0.05)
            if self._drain_deadline is not None and self._drained():
                return 0
            if self.sched.has_work:
                self.step()
            elif self.stats.num_steps % 20:
                self._export_stats()  # went idle: leave exact numbers in the heartbeat

    def step(self) -> None:
        t0 = time.perf_counter()
        self.sched.queue_depth = self.io.stats.queue_depth  # backlog the τ control may absorb
        plan = self.sched.schedule(now_ms())
        self._forget_cancelled(plan)
        t1 = time.perf_counter()
        result = self.runner.execute(plan)
        self.stats.forward_s += time.perf_counter() - t1
        if self.step_delay_s:
            time.sleep(self.step_delay_s)
        if self._drain_deadline is not None:
            self.sched.request_handback(None)  # before update(): it returns those at boundaries
        updates = self.sched.update(plan, result, now_ms())
        self.io.publish([self._out(u) for u in updates if u.req_id in self.meta])
        for u in updates:
            if u.finished:
                self.stats.finished_at_s.append(time.monotonic())
            if u.finished or u.failed or u.handed_back or u.expired:
                self._leave(u.req_id)
        self.stats.num_steps += 1
        self.stats.busy_s += time.perf_counter() - t0
        if self.stats.num_steps % 20 == 0:
            self._export_stats()

    # ---- inbox ----

    def _drain_inbox(self, block_s: float) -> None:
        try:
            msg = self.io.inbox.get(timeout=block_s) if block_s > 0 else self.io.inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            if isinstance(msg, WorkItem):
                self._add(msg)
            else:
                self._cancel(msg)
            try:
                msg = self.io.inbox.get_nowait()
            except queue.Empty:
                return

    def _add(self, it: WorkItem) -> None:
        if it.req_id in self.sched.seqs:
            # re-claimed while our stale copy still leaves: let the lease lapse, the reaper requeues
            log.warning("%s claimed again while still scheduled here; skipping", it.req_id,
                        extra={"req_id": it.req_id})
            self.io.release(it.req_id)
            return
        canvas = it.canvas or (list(it.prompt_ids) + [self.mask_id] * it.max_tokens)
        tau = max(self.tau, it.min_threshold)  # the pool default τ, or a client floor above it
        cls = self.classes.get(it.slo_class)
        own = max(cls.tau_floor if cls else tau, it.min_threshold)
        self.sched.add(
            SeqRequest(
                it.req_id, canvas, len(it.prompt_ids), it.block_length, it.deadline_ms,
                rule=ThresholdRule(tau), temperature=it.temperature, seed=it.seed,
                arrival_ms=it.arrival_ms, tau_floor=min(max(own, self.tau_floor), tau),
                late_action=cls.late_action if cls else "serve", slo_class=it.slo_class,
            )
        )  # fmt: skip
        self.meta[it.req_id] = _Meta(
            it.attempt, it.pool, len(it.prompt_ids), it.block_length, it.stop,
            it.min_threshold, own,
        )  # fmt: skip
        if self._drain_deadline is not None:
            self.sched.request_handback(it.req_id)

    # ---- plan changes ----

    def request_retune(self, tuning: PoolTuning) -> None:
        """From any thread: the plan changed this pool's τ, floor or batch cap."""
        self.tau = tuning.tau  # admissions from now on (a float store is atomic)
        self._tuning = tuning

    def _retune(self) -> None:
        """Apply the pool's new settings to new admissions, claims and every held request."""
        t, self._tuning = self._tuning, None
        assert t is not None
        self.tau, self.tau_floor = t.tau, t.tau_floor
        self.sched.set_max_batch_size(t.max_batch_size)
        self.io.max_batch_size = t.max_batch_size  # the claim thread reads it
        for req_id, st in self.sched.seqs.items():
            m = self.meta.get(req_id)
            if m is None or not isinstance(st.req.rule, ThresholdRule):
                continue
            tau = max(t.tau, m.min_threshold)
            st.req.rule = ThresholdRule(tau)
            st.req.tau_floor = min(max(m.own_floor, t.tau_floor), tau)
        log.info("pool settings: τ %.2f, floor %.2f, batch cap %d", t.tau, t.tau_floor,
                 t.max_batch_size)  # fmt: skip
        self._export_stats()

    def _cancel(self, msg: CancelMsg) -> None:
        if msg.req_id not in self.meta:
            return
        log.info("dropping %s from the batch (%s)", msg.req_id, msg.reason,
                 extra={"req_id": msg.req_id})
        self.sched.cancel(msg.req_id)
        del self.meta[msg.req_id]
        self.io.release(msg.req_id)

    def _forget_cancelled(self, plan: StepPlan) -> None:
        for req_id in plan.release:
            st = self.sched.seqs.get(req_id)
            if st is not None and st.status is SeqStatus.CANCELLED:
                self.sched.forget(req_id)
        for req_id in [r for r, st in self.sched.seqs.items() if st.status is SeqStatus.CANCELLED]:
            self.sched.forget(req_id)

    def _leave(self, req_id: str) -> None:
        self.meta.pop(req_id, None)
        if req_id in self.sched.seqs:
            self.sched.forget(req_id)

    # ---- outbox ----

    def _out(self, u: SeqUpdate) -> Out:
        m = self.meta[u.req_id]
        canvas = self.sched.canvas(u.req_id)
        if u.failed:
            kind = OutKind.FAILED
        elif u.expired:
            kind = OutKind.EXPIRED
        elif u.handed_back:
            kind = OutKind.HANDBACK
        else:
            kind = OutKind.DONE if u.finished else OutKind.PROGRESS
        keep_canvas = u.block_done or u.handed_back
        return Out(
            kind, u.req_id, m.attempt, m.pool, canvas[m.prompt_len :], m.block_length,
            steps=u.steps, tokens_committed=u.tokens_committed, tokens_total=u.tokens_total,
            block=u.block, block_done=u.block_done, tau=u.tau or 0.0,
            canvas=list(canvas) if keep_canvas else None, error=u.failed or "", stop=m.stop,
            late=u.late,
        )  # fmt: skip

    # ---- drain ----

    def _begin_drain(self) -> None:
        log.info("draining: no more claims; handing back at block boundaries")
        self.io.stop_claiming()
        self.sched.request_handback(None)
        self._drain_deadline = time.monotonic() + self.drain_timeout_s
        if not self.sched.running:  # nothing steps: waiting ones leave through an empty step
            self._flush_waiting()

    def _flush_waiting(self) -> None:
        from workers.sched.plan import StepResult

        updates = self.sched.update(StepPlan(), StepResult(), now_ms())
        self.io.publish([self._out(u) for u in updates if u.req_id in self.meta])
        for u in updates:
            self._leave(u.req_id)

    def _drained(self) -> bool:
        if not self.meta:
            return True
        if time.monotonic() < self._drain_deadline:  # type: ignore[operator]
            if not self.sched.running:
                self._flush_waiting()
            return not self.meta
        log.warning("drain timeout: handing back %d at their last checkpoint", len(self.meta))
        self.io.publish([
            Out(OutKind.HANDBACK, rid, m.attempt, m.pool, [], m.block_length)
            for rid, m in self.meta.items()
        ])  # fmt: skip
        self.meta.clear()
        return True

    def _service_rate_rps(self) -> float:
        """Requests finished per second over the last RATE_WINDOW_S (0 until one finished)."""
        now, done = time.monotonic(), self.stats.finished_at_s
        while done and done[0] < now - RATE_WINDOW_S:
            done.popleft()
        window = min(RATE_WINDOW_S, time.perf_counter() - self.stats.started_s)
        return len(done) / window if window > 0 else 0.0

    def _export_stats(self) -> None:
        wall = time.perf_counter() - self.stats.started_s
        self.io.stats.heartbeat = {
            "batch_size": str(len(self.sched.running)),
            "num_steps": str(self.stats.num_steps),
            "forward_s": f"{self.stats.forward_s:.4f}",
            "busy_s": f"{self.stats.busy_s:.4f}",
            "utilisation": f"{self.stats.busy_s / wall:.3f}" if wall > 0 else "0",
            "num_round_trips": str(self.io.stats.num_round_trips),
            "policy": self.sched.cfg.policy.name,
            "service_rate_rps": f"{self._service_rate_rps():.3f}",
            "tau": str(self.tau), "tau_floor": str(self.tau_floor),
            "max_batch_size": str(self.sched.cfg.max_batch_size),
            **{f"cost_{k}": f"{v:.4f}" for k, v in self.sched.predictions.summary().items()},
        }
        if self.sched.policy.cost is not None:
            overhead_ms = self.sched.policy.cost.overhead_ms.get(self.sched.cfg.policy.tp, 0.0)
            self.io.stats.heartbeat["cost_step_overhead_ms"] = f"{overhead_ms:.3f}"
            scale = self.sched.policy.completion_scale
            self.io.stats.heartbeat["cost_completion_scale"] = f"{scale:.3f}"

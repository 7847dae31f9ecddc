"""The scheduling core: decides, each step, who runs, in which phase and with which rule.

Pure and deterministic given its inputs and `now_ms`, so the worker loop, `Engine.generate` and
the simulator drive the same code. One step is three verbs:
    plan = sched.schedule(now_ms); result = runner.execute(plan); sched.update(plan, result, now_ms)
Admission order and the per-step rule come from the configured policy (workers/sched/policy.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from common.costmodel import CostModel, shape_of
from common.quality import QualityProfile
from workers.sched.plan import (
    CacheMode,
    NewSeq,
    Phase,
    SeqOutput,
    SeqStep,
    StepPlan,
    StepResult,
    ThresholdRule,
)
from workers.sched.policy import DeadlinePolicy, PolicyCfg, make_policy
from workers.sched.predict import PredictionLog
from workers.sched.state import SeqRequest, SeqState, SeqStatus, SeqUpdate


@dataclass(slots=True, frozen=True)
class SchedulerConfig:
    mask_token_id: int
    eos_token_id: int
    max_batch_size: int = 32
    max_failures: int = 2  # a request whose step raises is retried this many times, then failed
    policy: PolicyCfg = field(default_factory=PolicyCfg)


class Scheduler:
    def __init__(
        self,
        cfg: SchedulerConfig,
        cost: CostModel | None = None,
        profile: QualityProfile | None = None,
    ) -> None:
        self.cfg = cfg
        self.policy = make_policy(cfg.policy, cost, profile)
        self.seqs: dict[str, SeqState] = {}
        self.waiting: list[str] = []
        self.running: list[str] = []
        self._arrivals = 0
        self._release: list[str] = []  # ids the runner must drop at the next step
        self._pending: list[SeqUpdate] = []  # decided in schedule(), reported by update()
        self.predictions = PredictionLog()
        self.queue_depth = 0  # requests waiting in the pool's shared queue (the driver sets it)
        # id → (admitted at ms, predicted finish ms, that stay before the stay correction,
        # prompt length)
        self._predicted: dict[str, tuple[float, float, float, int]] = {}
        self._step_started_ms = 0.0
        # The last step, while its wall time is still open: (started, forward ms, predicted ms).
        # It closes at the next schedule() if that follows back to back (work was left).
        self._open_step: tuple[float, float, float] | None = None

    # ---- membership ----

    def add(self, req: SeqRequest) -> None:
        if req.req_id in self.seqs:
            raise ValueError(f"request {req.req_id} is already scheduled")
        st = SeqState(req=req, canvas=list(req.canvas), block=0, seq_no=self._arrivals)
        self._sync_progress(st)
        self.seqs[req.req_id] = st
        self.waiting.append(req.req_id)
        self._arrivals += 1

    def cancel(self, req_id: str) -> bool:
        st = self.seqs.get(req_id)
        if st is None or st.status.is_finished:
            return False
        st.cancel_requested = True
        return True

    def request_handback(self, req_id: str | None = None) -> None:
        """Hand back one request (or all) at its next block boundary."""
        for st in self.seqs.values() if req_id is None else [self.seqs[req_id]]:
            st.handback_requested = True

    def canvas(self, req_id: str) -> list[int]:
        return self.seqs[req_id].canvas

    def forget(self, req_id: str) -> None:
        """Drop a finished request's state (the driver has published it)."""
        if self.seqs[req_id].status.is_finished:
            del self.seqs[req_id]

    def set_max_batch_size(self, n: int) -> None:
        """A new batch cap (the plan's): running requests above it finish, none is admitted
        until the batch is below it."""
        self.cfg = replace(self.cfg, max_batch_size=n)

    @property
    def num_free_slots(self) -> int:
        return self.cfg.max_batch_size - len(self.running)

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    # ---- schedule ----

    def schedule(self, now_ms: float) -> StepPlan:
        self._close_step(now_ms)
        self._step_started_ms = now_ms
        plan = StepPlan(release=self._release)
        self._release = []
        self._pending.extend(self._drop_requested(plan, at_boundary_only=False))
        self._admit(plan, now_ms)
        for req_id in self.running:
            st = self.seqs[req_id]
            if not st.in_runner:
                plan.new.append(self._new_seq(st))
                st.in_runner, st.needs_refresh = True, True
            plan.steps.append(self._step_for(st, now_ms))
        return plan

    def _admit(self, plan: StepPlan, now_ms: float) -> None:
        self.waiting = [r for r in self.waiting if self.seqs[r].status is SeqStatus.WAITING]
        # Work beyond the free slots, here and in the pool queue, in batches: past the policy's
        # `give_up_backlog` capacity is contested and `drop` requests predicted to miss give
        # way (DeadlinePolicy.should_expire).
        free = self.num_free_slots
        contested = max(0, len(self.waiting) + self.queue_depth - free) / self.cfg.max_batch_size
        running = [self.seqs[r] for r in self.running]
        self._expire_hopeless(running, now_ms, contested)
        running = [self.seqs[r] for r in self.running]
        waiting = [self.seqs[r] for r in self.waiting]
        decision = self.policy.admit(waiting, running, self.num_free_slots, now_ms, contested)
        for req_id in decision.expire:
            self._expire(self.seqs[req_id])
        for req_id in decision.defer:
            st = self.seqs[req_id]
            st.late = True
            self._finish(st, SeqStatus.HANDED_BACK, runner_released=False)
            upd = self._update_of(st, [], [], False)
            upd.handed_back = upd.late = True
            self._pending.append(upd)
        for req_id in decision.admit:
            self.seqs[req_id].status = SeqStatus.RUNNING
            self.running.append(req_id)
        if self.policy.cost is not None:
            for req_id in decision.admit:
                st = self.seqs[req_id]
                tau = self.policy.planned_tau(st, len(self.running), now_ms)
                finish = self.policy.predict_finish_ms(st, tau, len(self.running), now_ms)
                unscaled_ms = (finish - now_ms) / self.policy.stay.factor(st.req.prompt_len)
                self._predicted[req_id] = (now_ms, finish, unscaled_ms, st.req.prompt_len)
        self.waiting = [r for r in self.waiting if self.seqs[r].status is SeqStatus.WAITING]

    def _expire_hopeless(self, running: list[SeqState], now_ms: float, backlog: float) -> None:
        """Running requests of `drop` classes that are lost causes leave (see should_expire)."""
        if not isinstance(self.policy, DeadlinePolicy):
            return
        for st in running:
            if self.policy.should_expire(st, len(running), now_ms, backlog):
                self._expire(st)
                self.policy.note_pressure(now_ms)

    def _expire(self, st: SeqState) -> None:
        self._finish(st, SeqStatus.EXPIRED, runner_released=False)
        upd = self._update_of(st, [], [], False)
        upd.expired = True
        self._pending.append(upd)

    def _step_for(self, st: SeqState, now_ms: float) -> SeqStep:
        mode = st.req.cache_mode
        if mode is CacheMode.NONE:
            phase = Phase.FULL
        else:
            phase = Phase.REFRESH if st.needs_refresh else Phase.REUSE
        rule = self.policy.rule_for(st, len(self.running), now_ms, self._backlog())
        st.last_tau = rule.tau if isinstance(rule, ThresholdRule) else None
        return SeqStep(st.req_id, st.block, phase, rule, st.step_in_block)

    def _backlog(self) -> float:
        """Work that cannot start now, in batches: what waits here after admission plus what the
        pool queue holds beyond this batch's free slots."""
        beyond = max(0, self.queue_depth - self.num_free_slots)
        return (len(self.waiting) + beyond) / self.cfg.max_batch_size

    def _new_seq(self, st: SeqState) -> NewSeq:
        r = st.req
        return NewSeq(
            r.req_id, list(st.canvas), r.prompt_len, r.block_length, r.cache_mode,
            r.temperature, r.seed,
        )  # fmt: skip

    # ---- update ----

    def update(self, plan: StepPlan, result: StepResult, now_ms: float) -> list[SeqUpdate]:
        self._observe_cost(result)
        updates, self._pending = self._pending, []
        updates.extend(self._apply(out) for out in result.outputs if out.req_id in self.seqs)
        for u in updates:
            if u.finished and u.req_id in self._predicted:
                admitted, finish, unscaled_ms, prompt_len = self._predicted.pop(u.req_id)
                self.predictions.record_completion(finish - admitted, now_ms - admitted)
                self.policy.observe_completion(prompt_len, unscaled_ms, now_ms - admitted)
            elif u.failed or u.handed_back or u.expired:
                self._predicted.pop(u.req_id, None)
        for req_id, error in result.failed.items():
            if req_id in self.seqs:
                updates.extend(self._fail(self.seqs[req_id], error))
        updates.extend(self._drop_requested(None, at_boundary_only=True))
        if not self.has_work:  # the driver idles next: the gap to the next step is not this one's
            self._open_step = None
        return updates

    def _observe_cost(self, result: StepResult) -> None:
        """Score the cost model's prediction of this step's forwards, correct it online, and
        open the step's wall-time measurement (closed by the next back-to-back schedule())."""
        cost, tp = self.policy.cost, self.cfg.policy.tp
        self._open_step = None
        if cost is None or not (result.full_s or result.reuse_s):
            return
        shape = shape_of(result)
        forward_ms = 1e3 * result.step_s
        predicted_ms = cost.step_ms(shape, tp)
        self.predictions.record_forward(predicted_ms - cost.overhead_ms.get(tp, 0.0), forward_ms)
        cost.observe(shape, 1e3 * result.full_s, 1e3 * result.reuse_s, tp)
        self._open_step = (self._step_started_ms, forward_ms, predicted_ms)

    def _close_step(self, now_ms: float) -> None:
        """The previous step's wall time is known when this step follows it without idling."""
        if self._open_step is None or self.policy.cost is None:
            return
        started_ms, forward_ms, predicted_ms = self._open_step
        self._open_step = None
        wall_ms = now_ms - started_ms
        self.predictions.record_step(predicted_ms, wall_ms)
        self.policy.cost.observe_wall(wall_ms, forward_ms, self.cfg.policy.tp)

    def _apply(self, out: SeqOutput) -> SeqUpdate:
        st = self.seqs[out.req_id]
        positions, tokens = list(out.positions), list(out.tokens)
        for p, t in zip(positions, tokens, strict=True):
            st.canvas[p] = t
        if out.eos_fill_from is not None:
            for p in range(out.eos_fill_from, len(st.canvas)):
                if st.canvas[p] == self.cfg.mask_token_id:
                    st.canvas[p] = self.cfg.eos_token_id
                    positions.append(p)
                    tokens.append(self.cfg.eos_token_id)
        st.steps += 1
        st.step_in_block += 1
        st.needs_refresh = False
        if out.positions:
            st.mean_confidence = 0.7 * st.mean_confidence + 0.3 * out.min_confidence
        self._sync_progress(st)
        if out.finished:
            self._finish(st, SeqStatus.DONE, runner_released=True)
        elif out.block_done:
            st.step_in_block, st.needs_refresh = 0, True
        return self._update_of(st, positions, tokens, out.block_done)

    def _sync_progress(self, st: SeqState) -> None:
        answer, mask = st.canvas[st.req.prompt_len :], self.cfg.mask_token_id
        st.num_masked = answer.count(mask)  # C loops: this runs per request per step
        first = answer.index(mask) if st.num_masked else len(answer)
        st.block = first // st.req.block_length

    def _update_of(
        self, st: SeqState, positions: list[int], tokens: list[int], block_done: bool
    ) -> SeqUpdate:
        total = st.req.gen_length
        return SeqUpdate(
            st.req_id, positions, tokens, st.block, block_done,
            finished=st.status is SeqStatus.DONE, steps=st.steps,
            tokens_committed=total - st.num_masked, tokens_total=total, tau=st.last_tau,
        )  # fmt: skip

    def _fail(self, st: SeqState, error: str) -> list[SeqUpdate]:
        st.failures += 1
        st.in_runner = False  # the runner released its slot; a retry rejoins with a refresh
        if st.failures <= self.cfg.max_failures:
            return []
        self._finish(st, SeqStatus.FAILED, runner_released=True)
        upd = self._update_of(st, [], [], False)
        upd.failed = error
        return [upd]

    def _drop_requested(self, plan: StepPlan | None, at_boundary_only: bool) -> list[SeqUpdate]:
        """Remove cancelled requests at once and handed-back ones at a block boundary."""
        updates = []
        for st in list(self.seqs.values()):
            if st.status.is_finished:
                continue
            if st.cancel_requested and not at_boundary_only:
                self._finish(st, SeqStatus.CANCELLED, runner_released=False)
            elif st.handback_requested and (st.needs_refresh or st.status is SeqStatus.WAITING):
                self._finish(st, SeqStatus.HANDED_BACK, runner_released=False)
                upd = self._update_of(st, [], [], False)
                upd.handed_back = True
                updates.append(upd)
        if plan is not None:
            plan.release.extend(self._release)
            self._release = []
        return updates

    def _finish(self, st: SeqState, status: SeqStatus, runner_released: bool) -> None:
        st.status = status
        if st.req_id in self.running:
            self.running.remove(st.req_id)
        if st.in_runner and not runner_released:
            self._release.append(st.req_id)
        st.in_runner = False

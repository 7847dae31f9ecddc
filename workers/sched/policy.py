"""Scheduling policies: who is admitted first, and at which threshold each request steps.

- `fcfs-fixed`: arrival order, the request's fixed τ (how DLM servers behave today).
- `edf-fixed`: earliest deadline first, fixed τ.
- `cw-srpt`: shortest predicted remaining work first, discounted by the request's recent
  confidence (confident requests finish in fewer steps) and aged by waiting time; fixed τ.
- `dilaserve`: EDF over requests that can still make their deadline, admission only while the
  predicted step time keeps every admitted request on time, per-step τ = the highest ladder
  value that still finishes by the deadline (never below the floor), late requests handled per
  their class (`drop` → expired, `serve` → best effort behind the on-time ones).
Pure: the cost model and quality profile are plain Python (common/costmodel.py, quality.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from common.costmodel import CostModel
from common.quality import QualityProfile
from workers.sched.plan import DecodeRule, ThresholdRule
from workers.sched.state import SeqState
from workers.sched.stay import StayScale

POLICIES = ("fcfs-fixed", "edf-fixed", "cw-srpt", "dilaserve")


@dataclass(slots=True, frozen=True)
class PolicyCfg:
    name: str = "edf-fixed"
    tau_ladder: tuple[float, ...] = (0.9, 0.85, 0.8, 0.7, 0.6, 0.5)  # highest first
    aging_per_s: float = 1.0  # cw-srpt: predicted steps forgiven per second waited
    safety: float = 0.9  # dilaserve: plan to finish within this share of the remaining slack
    pressure_hold_ms: float = 2000.0  # dilaserve: how long a deadline at risk keeps τ lowered
    accuracy_budget_points: float = 1.0  # dilaserve: what lent slack may cost (profile accuracy)
    # dilaserve: work waiting beyond the free slots, in batches, before a drop request that is
    # predicted late gives way (a claim tick's worth of queue is not yet contested capacity)
    give_up_backlog: float = 0.5
    max_batch_tokens: int = 0  # Σ canvas tokens in the batch; 0 = no token budget
    # dilaserve: admit only while every admitted request stays on time by prediction (False:
    # work-conserving, fill every free slot in deadline order)
    guard_admission: bool = True
    # Weight of each finished request in the completion-time correction (an EWMA of
    # log(measured / predicted)); ~1/this completions of memory.
    completion_alpha: float = 0.03
    tp: int = 1

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise ValueError(f"unknown scheduling policy {self.name!r}; choose from {POLICIES}")


@dataclass(slots=True)
class Decision:
    admit: list[str] = field(default_factory=list)
    expire: list[str] = field(default_factory=list)  # hopeless, class drops: → expired
    defer: list[str] = field(default_factory=list)  # hopeless, class serves: → best-effort lane


class Policy:
    """Fixed-τ policies differ only in admission order; `dilaserve` overrides more."""

    def __init__(self, cfg: PolicyCfg, cost: CostModel | None, profile: QualityProfile | None):
        self.cfg, self.cost, self.profile = cfg, cost, profile
        # A request's stay vs the step model's prediction, learned per prompt length from
        # finished requests (batch changes after admission, steps its answer really takes).
        self.stay = StayScale(cfg.completion_alpha)

    @property
    def completion_scale(self) -> float:
        """The correction over all requests (what a worker exports)."""
        return self.stay.overall

    def observe_completion(self, prompt_len: int, unscaled_ms: float, measured_ms: float) -> None:
        """A finished request: `unscaled_ms` its stay as the step model predicted at admission
        (before the stay correction), `measured_ms` its real one."""
        self.stay.observe(prompt_len, unscaled_ms, measured_ms)

    def admit(
        self, waiting: list[SeqState], running: list[SeqState], free: int, now_ms: float,
        backlog: float = 0.0,
    ) -> Decision:  # fmt: skip
        """`backlog`: work waiting beyond the free slots (here and in the pool), in batches."""
        ordered = sorted(waiting, key=lambda st: self.order_key(st, now_ms))
        budget = self._token_budget(running)
        out = Decision()
        for st in ordered:
            if len(out.admit) >= free or len(st.canvas) > budget:
                break
            out.admit.append(st.req_id)
            budget -= len(st.canvas)
        return out

    def order_key(self, st: SeqState, now_ms: float) -> tuple[float, ...]:
        name = self.cfg.name
        if name == "fcfs-fixed":
            return (st.req.arrival_ms, st.seq_no)
        if name == "cw-srpt":
            work = self._steps_left(st, self._fixed_tau(st)) * (1.0 - 0.5 * st.mean_confidence)
            waited_s = max(0.0, now_ms - st.req.arrival_ms) / 1e3
            return (work - self.cfg.aging_per_s * waited_s, st.seq_no)
        return (st.req.deadline_ms, st.seq_no)

    def rule_for(
        self, st: SeqState, batch_size: int, now_ms: float, backlog: float = 0.0
    ) -> DecodeRule:
        """`backlog`: work that cannot start now, in full batches."""
        return st.req.rule

    def planned_tau(self, st: SeqState, batch_size: int, now_ms: float) -> float:
        """The τ `rule_for` would choose now, without side effects (for predictions)."""
        return self._fixed_tau(st)

    def _token_budget(self, running: list[SeqState]) -> float:
        if not self.cfg.max_batch_tokens:
            return float("inf")
        return self.cfg.max_batch_tokens - sum(len(st.canvas) for st in running)

    def predict_finish_ms(
        self, st: SeqState, tau: float, batch_size: int, now_ms: float, safety: float = 1.0
    ) -> float:
        """When `st` finishes if it decodes at τ in a steady batch of `batch_size` (cost model)."""
        assert self.cost is not None
        steps = self._steps_left(st, tau)
        tps = 1.0 if tau >= 1.0 else 3.0  # no profile: Fast-dLLM's ~3 tokens/step at τ 0.9
        if self.profile is not None:
            tps = max(self.profile.at(min(tau, 1.0), st.req.cache_mode.value).tokens_per_step, 1.0)
        step_ms = self.cost.batch_step_ms(
            batch_size, len(st.canvas), st.req.block_length, st.req.block_length / tps,
            st.req.cache_mode.value, self.cfg.tp,
        )  # fmt: skip
        return now_ms + steps * step_ms * self.stay.factor(st.req.prompt_len) / safety

    def _fixed_tau(self, st: SeqState) -> float:
        return st.req.rule.tau if isinstance(st.req.rule, ThresholdRule) else 1.0

    def _steps_left(self, st: SeqState, tau: float) -> float:
        """Expected steps to finish, at least one per block left. With a quality profile: its
        measured steps per answer, pro rata to what is still masked (this counts answers that
        end early at an EOS); without one, masked tokens / ~3 tokens per step."""
        blocks_left = -(-st.num_masked // st.req.block_length)
        if self.profile is None:
            return float(st.num_masked) if tau >= 1.0 else max(blocks_left, st.num_masked / 3.0)
        point = self.profile.at(min(tau, 1.0), st.req.cache_mode.value)
        share = st.num_masked / max(self.profile.gen_length, 1)
        return max(float(blocks_left), point.steps_per_answer * share)


class DeadlinePolicy(Policy):
    """The `dilaserve` policy: deadline-aware admission and threshold control.

    A request's τ is the highest that meets its own deadline, unless some deadline is at risk
    (a request had to lower its τ for itself, or one could not be admitted or kept in time):
    then for `pressure_hold_ms` every request steps at its lending τ, the lowest of its ladder
    whose profiled accuracy is within `accuracy_budget_points` of its top τ's (never below its
    floor). A request that lingers at a high τ holds its batch slot longer and lengthens every
    step of its batch, so slack it does not need is lent to the requests that do, at a bounded
    cost in accuracy; when the pressure passes, τ goes back up. A request's own deadline may
    still take it down to its floor."""

    def __init__(self, cfg: PolicyCfg, cost: CostModel | None, profile: QualityProfile | None):
        super().__init__(cfg, cost, profile)
        self.pressure_until_ms = -math.inf
        self._lending: dict[tuple[float, float, str], float] = {}

    def under_pressure(self, now_ms: float) -> bool:
        return now_ms < self.pressure_until_ms

    def note_pressure(self, now_ms: float) -> None:
        self.pressure_until_ms = now_ms + self.cfg.pressure_hold_ms

    def admit(
        self, waiting: list[SeqState], running: list[SeqState], free: int, now_ms: float,
        backlog: float = 0.0,
    ) -> Decision:  # fmt: skip
        out = self._admit(waiting, running, free, now_ms, backlog)
        if out.expire or out.defer:
            self.note_pressure(now_ms)
        return out

    def should_expire(self, st: SeqState, batch_size: int, now_ms: float, backlog: float) -> bool:
        """A `drop` request leaves once its deadline has passed, or once it is predicted to
        miss while other work waits for its slot. With capacity to spare it keeps its chance:
        predictions are conservative, and serving it costs nobody anything."""
        if st.req.late_action != "drop":
            return False
        if now_ms >= st.req.deadline_ms:
            return True
        return backlog >= self.cfg.give_up_backlog and self.is_hopeless(st, batch_size, now_ms)

    def _admit(
        self, waiting: list[SeqState], running: list[SeqState], free: int, now_ms: float,
        backlog: float,
    ) -> Decision:  # fmt: skip
        out = Decision()
        on_time, late, spare = [], [], []
        for st in sorted(waiting, key=lambda s: (s.req.deadline_ms, s.seq_no)):
            if self.should_expire(st, len(running) + 1, now_ms, backlog):
                out.expire.append(st.req_id)
            elif not self.is_hopeless(st, len(running) + 1, now_ms):
                on_time.append(st)
            elif st.req.late_action == "drop":
                spare.append(st)  # predicted late, but nothing waits for its slot: a chance
            else:
                late.append(st)  # best effort, behind every request that can still make it
        if on_time and late:
            # Do not let hopeless requests hold claim room that on-time work could use: hand
            # them back to the pool's best-effort lane, served when nothing on time waits.
            out.defer = [st.req_id for st in late]
            late = []
        batch = list(running)
        budget = self._token_budget(running)
        for st in on_time + spare + late:
            if len(out.admit) >= free or len(st.canvas) > budget:
                break
            guarded = self.cfg.guard_admission and st in on_time
            if guarded and not self._all_on_time(batch + [st], now_ms):
                continue  # would make someone late: a later-deadline request may still fit
            st.late = st.late or st not in on_time  # it constrains no one else's admission
            out.admit.append(st.req_id)
            batch.append(st)
            budget -= len(st.canvas)
        return out

    def rule_for(
        self, st: SeqState, batch_size: int, now_ms: float, backlog: float = 0.0
    ) -> DecodeRule:
        """The highest τ that meets the deadline, lowered further while work waits: a queue
        behind a full batch is load the threshold can absorb (more tokens per step, shorter
        stays), one ladder step per half batch of backlog."""
        own = self._highest_on_time_tau(st, batch_size, now_ms, 0.0)
        if own is None:
            st.late = True
            # Already late: finish at the floor, the fewest steps, so it stops holding a slot.
            return ThresholdRule(self._floor(st))
        if own < self._fixed_tau(st):
            self.note_pressure(now_ms)  # its own deadline needed a lower τ: slack is short
        if self.under_pressure(now_ms):
            return ThresholdRule(min(own, self._lending_tau(st)))
        if backlog <= 0:
            return ThresholdRule(own)  # nothing waits: its own best is the answer
        tau = self._highest_on_time_tau(st, batch_size, now_ms, backlog)
        return ThresholdRule(own if tau is None else tau)

    def planned_tau(self, st: SeqState, batch_size: int, now_ms: float) -> float:
        tau = self._highest_on_time_tau(st, batch_size, now_ms, 0.0)
        if tau is None:
            return self._floor(st)
        return min(tau, self._lending_tau(st)) if self.under_pressure(now_ms) else tau

    def _lending_tau(self, st: SeqState) -> float:
        """The lowest τ of its ladder within the accuracy budget of its top τ (memoised: a few
        (top, floor, cache mode) combinations recur every step)."""
        key = (self._fixed_tau(st), self._floor(st), st.req.cache_mode.value)
        if key not in self._lending:
            self._lending[key] = self._lowest_within_budget(self._ladder(st), key[2])
        return self._lending[key]

    def _lowest_within_budget(self, ladder: list[float], mode: str) -> float:
        if self.profile is None:
            return ladder[-1]
        accuracy = {t: self.profile.at(min(t, 1.0), mode).accuracy for t in ladder}
        least = accuracy[ladder[0]] - self.cfg.accuracy_budget_points / 100.0
        return min((t for t in ladder if accuracy[t] >= least), default=ladder[0])

    def _highest_on_time_tau(
        self, st: SeqState, batch_size: int, now_ms: float, backlog: float
    ) -> float | None:
        ladder = self._ladder(st)
        shed = min(len(ladder) - 1, math.ceil(2 * backlog))
        for tau in ladder[shed:]:
            if self._finish_ms(st, tau, batch_size, now_ms) <= st.req.deadline_ms:
                return tau
        return None

    def is_hopeless(self, st: SeqState, batch_size: int, now_ms: float) -> bool:
        """Predicted to miss even at its floor, by the typical (median) prediction: giving a
        request up needs the model's best guess, not the safety margin τ is chosen with."""
        finish_ms = self.predict_finish_ms(st, self._floor(st), batch_size, now_ms)
        return finish_ms > st.req.deadline_ms

    def _ladder(self, st: SeqState) -> list[float]:
        top, floor = self._fixed_tau(st), self._floor(st)
        return [t for t in sorted({top, *self.cfg.tau_ladder}, reverse=True) if floor <= t <= top]

    def _floor(self, st: SeqState) -> float:
        return min(self._fixed_tau(st), max(st.req.tau_floor, min(self.cfg.tau_ladder)))

    def _finish_ms(self, st: SeqState, tau: float, batch_size: int, now_ms: float) -> float:
        return self.predict_finish_ms(st, tau, batch_size, now_ms, self.cfg.safety)

    def _all_on_time(self, batch: list[SeqState], now_ms: float) -> bool:
        n = len(batch)
        return all(
            self._finish_ms(st, self._floor(st), n, now_ms) <= st.req.deadline_ms
            for st in batch
            if not st.late
        )


def make_policy(
    cfg: PolicyCfg, cost: CostModel | None = None, profile: QualityProfile | None = None
) -> Policy:
    if cfg.name == "dilaserve":
        if cost is None:
            raise ValueError("the dilaserve policy needs a cost model (run `dilaserve profile`)")
        return DeadlinePolicy(cfg, cost, profile)
    return Policy(cfg, cost, profile)

"""SimRunner: the simulator's stand-in for ModelRunner, same StepPlan → StepResult contract.

Step times come from the cost model; tokens committed per step are drawn from the quality
profile's distribution at the step's τ (seeded, so a run is reproducible). The scheduling core
cannot tell it from the real runner, which is the point: one core, two drivers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.costmodel import CostModel, StepShape, SubBatch
from common.quality import QualityProfile
from workers.sched.plan import (
    FixedCountRule,
    Phase,
    SeqOutput,
    SeqStep,
    StepPlan,
    StepResult,
    ThresholdRule,
)

SIM_TOKEN = 1  # what the simulator "commits": any id that is not the mask


@dataclass(slots=True)
class _Seq:
    canvas: list[int]
    prompt_len: int
    block_length: int
    cache_mode: str


class SimRunner:
    def __init__(
        self,
        cost: CostModel,
        profile: QualityProfile,
        mask_token_id: int,
        seed: int = 0,
        tp: int = 1,
        slowdown: float = 1.0,
        jitter: float = 0.0,
    ) -> None:
        self.cost, self.profile, self.mask, self.tp = cost, profile, mask_token_id, tp
        self.rng = random.Random(seed)
        # A machine slower than the profiled one (slowdown) and noisy step times (jitter: σ of a
        # median-1 log-normal factor per sub-batch), as on cores shared with other processes.
        self.slowdown, self.jitter = slowdown, jitter
        self.seqs: dict[str, _Seq] = {}

    def execute(self, plan: StepPlan) -> StepResult:
        for req_id in plan.release:
            self.seqs.pop(req_id, None)
        for n in plan.new:
            self.seqs[n.req_id] = _Seq(
                list(n.canvas), n.prompt_len, n.block_length, n.cache_mode.value
            )
        steps = [s for s in plan.steps if s.req_id in self.seqs]
        shape = self._shape(steps)
        full_ms, reuse_ms = (self._noisy(ms) for ms in self.cost.sub_batch_ms(shape, self.tp))
        result = StepResult(full_s=full_ms / 1e3, reuse_s=reuse_ms / 1e3)
        # The step's composition, as the real runner reports it (the cost model's online
        # correction and its prediction errors read it).
        full, reuse = shape.full, shape.reuse
        result.num_full_rows, result.num_reuse_rows = full.num_rows, reuse.num_rows
        result.num_full_tokens, result.num_reuse_tokens = full.num_tokens, reuse.num_tokens
        result.full_attn_area, result.reuse_attn_area = full.attn_area, reuse.attn_area
        result.outputs = [self._commit(s) for s in steps]
        return result

    def _noisy(self, ms: float) -> float:
        if self.jitter and ms:
            ms *= self.rng.lognormvariate(0.0, self.jitter)
        return ms * self.slowdown

    def _shape(self, steps: list[SeqStep]) -> StepShape:
        full = [self.seqs[s.req_id] for s in steps if s.phase is not Phase.REUSE]
        reuse = [(s, self.seqs[s.req_id]) for s in steps if s.phase is Phase.REUSE]
        f_tok = sum(len(q.canvas) for q in full)
        f_area = sum(len(q.canvas) ** 2 for q in full)
        r_q = [self._fed(s, q) for s, q in reuse]
        r_area = sum(n * len(q.canvas) for n, (_, q) in zip(r_q, reuse, strict=True))
        return StepShape(SubBatch(len(full), f_tok, f_area), SubBatch(len(reuse), sum(r_q), r_area))

    def _fed(self, s: SeqStep, q: _Seq) -> int:
        start = q.prompt_len + s.block * q.block_length
        return q.block_length if q.cache_mode == "dual" else len(q.canvas) - start

    def _commit(self, s: SeqStep) -> SeqOutput:
        q = self.seqs[s.req_id]
        start = q.prompt_len + s.block * q.block_length
        masked = [p for p in range(start, start + q.block_length) if q.canvas[p] == self.mask]
        k = min(len(masked), self._draw(s, q, len(masked)))
        positions = masked[:k]
        for p in positions:
            q.canvas[p] = SIM_TOKEN
        finished = self.mask not in q.canvas[q.prompt_len :]
        if finished:
            del self.seqs[s.req_id]
        return SeqOutput(
            s.req_id, positions, [SIM_TOKEN] * k, None,
            block_done=k == len(masked), finished=finished, min_confidence=0.9,
        )  # fmt: skip

    def _draw(self, s: SeqStep, q: _Seq, num_masked: int) -> int:
        rule = s.rule
        if isinstance(rule, FixedCountRule):
            return max(1, q.block_length // rule.steps_per_block)
        tau = rule.tau if isinstance(rule, ThresholdRule) else 0.9
        point = self.profile.at(tau, q.cache_mode)
        dist = point.tokens_per_step_dist
        if dist:
            return 1 + self.rng.choices(range(len(dist)), weights=dist)[0]
        mean = point.tokens_per_step  # no distribution measured: round the mean stochastically
        return int(mean) + (1 if self.rng.random() < mean - int(mean) else 0)

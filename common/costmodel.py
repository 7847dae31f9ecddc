"""Cost model: predicted step time from a step's composition, per tensor-parallel degree.

A step runs up to two sub-batches (workers/runner.py), timed separately, so each has its own
linear model (the refresh/reuse asymmetry is explicit):
    full_ms  = a + r · rows + b · Σ L_i + d · Σ L_i²        (refresh and no-cache rows)
    reuse_ms = a + r · rows + b · Σ q_i + d · Σ q_i · L_i   (cached rows, q_i fed tokens)
(a: per-step fixed cost, r: per-row gathers and bookkeeping, b: linear layers, d: attention)
Coefficients are fitted by least squares from measured steps (`dilaserve profile`) and corrected
online by an EWMA of the measured/predicted ratio. A step's wall time also holds what runs around
the forwards (scheduling, publishing progress, the I/O threads, other processes on the cores):
an EWMA of that per-step overhead, measured between back-to-back steps, is added to every
prediction, so request-level predictions are in wall-clock time. Pure Python: used by workers,
the gateway's admission, the planner and the simulator alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.quality import QualityProfile

OVERHEAD_STEP_MS = 0.02  # streaming-median step of the per-step overhead estimate


@dataclass(slots=True, frozen=True)
class SubBatch:
    """What a sub-batch costs depends on: rows, fed tokens and attention area."""

    num_rows: int = 0
    num_tokens: int = 0  # Σ query tokens fed
    attn_area: int = 0  # Σ query tokens × keys

    def features(self) -> list[float]:
        has_rows = 1.0 if self.num_rows else 0.0
        return [has_rows, float(self.num_rows), float(self.num_tokens), float(self.attn_area)]


@dataclass(slots=True, frozen=True)
class StepShape:
    full: SubBatch = SubBatch()
    reuse: SubBatch = SubBatch()


def shape_of(result: object) -> StepShape:
    """The composition of a step from its StepResult (workers/sched/plan.py)."""
    r = result
    return StepShape(
        SubBatch(r.num_full_rows, r.num_full_tokens, r.full_attn_area),  # type: ignore[attr-defined]
        SubBatch(r.num_reuse_rows, r.num_reuse_tokens, r.reuse_attn_area),  # type: ignore[attr-defined]
    )


@dataclass(slots=True)
class Coeffs:
    """[a, r, b, d] for each sub-batch kind, in milliseconds."""

    full: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.01, 0.0])
    reuse: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.01, 0.0])

    def predict(self, shape: StepShape) -> tuple[float, float]:
        f = sum(c * x for c, x in zip(self.full, shape.full.features(), strict=True))
        r = sum(c * x for c, x in zip(self.reuse, shape.reuse.features(), strict=True))
        return (f if shape.full.num_rows else 0.0), (r if shape.reuse.num_rows else 0.0)


@dataclass(slots=True)
class CostModel:
    coeffs: dict[int, Coeffs]  # tp degree → coefficients
    ewma_alpha: float = 0.1
    correction: dict[tuple[int, str], float] = field(default_factory=dict)  # online ratio
    overhead_ms: dict[int, float] = field(default_factory=dict)  # tp → wall time outside forwards

    # ---- step time ----

    def step_ms(self, shape: StepShape, tp: int = 1) -> float:
        """Predicted wall time of a step: its forwards plus the per-step overhead."""
        f, r = self.sub_batch_ms(shape, tp)
        return f + r + self.overhead_ms.get(tp, 0.0)

    def sub_batch_ms(self, shape: StepShape, tp: int = 1) -> tuple[float, float]:
        f, r = self._coeffs(tp).predict(shape)
        return f * self.correction.get((tp, "full"), 1.0), r * self.correction.get(
            (tp, "reuse"), 1.0
        )

    def observe(self, shape: StepShape, full_ms: float, reuse_ms: float, tp: int = 1) -> None:
        """Online correction from a measured step: an EWMA of log(measured / predicted) per
        kind. Step times on shared cores are right-skewed (a preempted step takes twice as
        long); averaging logs tracks the typical step, where averaging ratios would let the
        rare slow ones bias every prediction pessimistic."""
        pf, pr = self._coeffs(tp).predict(shape)
        for kind, pred, meas in (("full", pf, full_ms), ("reuse", pr, reuse_ms)):
            if pred > 0 and meas > 0:
                old = math.log(self.correction.get((tp, kind), 1.0))
                new = (1 - self.ewma_alpha) * old + self.ewma_alpha * math.log(meas / pred)
                self.correction[(tp, kind)] = math.exp(new)

    def observe_wall(self, wall_ms: float, forward_ms: float, tp: int = 1) -> None:
        """Online overhead from a step's wall time (start to the next back-to-back start): a
        streaming median (each step moves it OVERHEAD_STEP_MS towards the sample), robust to
        the odd long gap (a garbage collection, a burst of claims)."""
        extra_ms = max(0.0, wall_ms - forward_ms)
        old = self.overhead_ms.get(tp)
        if old is None:
            self.overhead_ms[tp] = extra_ms
        elif extra_ms != old:
            self.overhead_ms[tp] = max(0.0, old + math.copysign(OVERHEAD_STEP_MS, extra_ms - old))

    def _coeffs(self, tp: int) -> Coeffs:
        if tp in self.coeffs:
            return self.coeffs[tp]
        return self.coeffs[min(self.coeffs, key=lambda d: abs(d - tp))]

    # ---- request-level predictions ----

    def batch_step_ms(
        self, batch_size: int, canvas_len: int, block_length: int, steps_per_block: float,
        cache_mode: str = "dual", tp: int = 1,
    ) -> float:  # fmt: skip
        """Expected step time of a steady batch: each step, each row refreshes with probability
        1/steps_per_block; a sub-batch's fixed cost is paid only when it has a row."""
        c = self._coeffs(tp)
        B, L = float(batch_size), float(canvas_len)
        overhead_ms = self.overhead_ms.get(tp, 0.0)
        if cache_mode == "none":
            full = c.full[0] + _linear(c.full, B, B * L, B * L * L)
            return full * self.correction.get((tp, "full"), 1.0) + overhead_ms
        p = min(1.0, 1.0 / max(steps_per_block, 1.0))
        q = float(block_length) if cache_mode == "dual" else L  # prefix feeds the suffix too
        n_full, n_reuse = B * p, B * (1.0 - p)
        full = (1 - (1 - p) ** B) * c.full[0] + _linear(c.full, n_full, n_full * L, n_full * L * L)
        reuse = (1 - p**B) * c.reuse[0] + _linear(c.reuse, n_reuse, n_reuse * q, n_reuse * q * L)
        corrected = full * self.correction.get((tp, "full"), 1.0) + reuse * self.correction.get(
            (tp, "reuse"), 1.0
        )
        return corrected + overhead_ms

    def remaining_steps(
        self, masked_left: int, block_length: int, profile: QualityProfile, tau: float,
        cache_mode: str = "dual",
    ) -> float:  # fmt: skip
        """Expected steps to commit `masked_left` answer tokens at τ."""
        tps = max(profile.at(tau, cache_mode).tokens_per_step, 1.0)
        return masked_left / tps

    def to_json(self) -> str:
        return json.dumps({str(tp): asdict(c) for tp, c in self.coeffs.items()}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CostModel:
        return cls({int(tp): Coeffs(**c) for tp, c in json.loads(text).items()})

    @classmethod
    def load(cls, path: str | Path) -> CostModel:
        return cls.from_json(Path(path).read_text())


def _linear(c: list[float], rows: float, tokens: float, area: float) -> float:
    return c[1] * rows + c[2] * tokens + c[3] * area


def fit(samples: list[tuple[SubBatch, float]]) -> list[float]:
    """Least squares [a, r, b, d] from (sub-batch, measured ms) samples, on relative error (each
    row divided by its measurement, so a 3 ms step counts as much as a 150 ms one: the scheduler
    needs small steps right too). Coefficients are kept ≥ 0: a cost never falls with more work."""
    import numpy as np

    y = np.array([ms for _, ms in samples])
    X = np.array([s.features() for s, _ in samples]) / y[:, None]
    ones = np.ones(len(y))
    keep = np.ones(X.shape[1], dtype=bool)
    coef = np.zeros(X.shape[1])
    for _ in range(X.shape[1]):  # drop negative terms and refit until all are ≥ 0
        sub, *_ = np.linalg.lstsq(X[:, keep], ones, rcond=None)
        coef[:] = 0
        coef[keep] = sub
        if (coef >= 0).all():
            break
        keep &= coef > 0
    return [float(max(c, 0.0)) for c in coef]

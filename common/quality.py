"""Quality profile: accuracy and tokens committed per step at each threshold τ, per cache mode.

Written by `dilaserve eval` next to a model (quality_profile.json); read by the scheduler's τ
control, the cost model's remaining-time predictions, the planner and the simulator.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(slots=True, frozen=True)
class QualityPoint:
    tau: float
    accuracy: float  # exact-match fraction on held-out problems
    tokens_per_step: float  # mean tokens committed per step (EOS fill excluded)
    steps_per_answer: float
    # P(k tokens committed in a step), k = 1..block_length, as a list indexed by k − 1.
    tokens_per_step_dist: list[float] = field(default_factory=list)


@dataclass(slots=True)
class QualityProfile:
    model: str
    gen_length: int
    block_length: int
    num_problems: int
    points: dict[str, list[QualityPoint]]  # cache mode → points sorted by τ descending
    _memo: dict[tuple[float, str], QualityPoint] = field(default_factory=dict, repr=False)

    def curve(self, cache_mode: str = "dual") -> list[QualityPoint]:
        return self.points.get(cache_mode) or next(iter(self.points.values()))

    def at(self, tau: float, cache_mode: str = "dual") -> QualityPoint:
        """The point at τ, linearly interpolated between measured thresholds (memoised: the
        scheduler asks for the same few thresholds every step)."""
        key = (tau, cache_mode)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._interpolate(tau, cache_mode)
        return hit

    def _interpolate(self, tau: float, cache_mode: str) -> QualityPoint:
        pts = sorted(self.curve(cache_mode), key=lambda p: p.tau)
        if tau <= pts[0].tau:
            return pts[0]
        for lo, hi in zip(pts, pts[1:], strict=False):
            if lo.tau <= tau <= hi.tau:
                w = (tau - lo.tau) / (hi.tau - lo.tau) if hi.tau > lo.tau else 0.0
                return QualityPoint(
                    tau,
                    _mix(lo.accuracy, hi.accuracy, w),
                    _mix(lo.tokens_per_step, hi.tokens_per_step, w),
                    _mix(lo.steps_per_answer, hi.steps_per_answer, w),
                )
        return pts[-1]

    def taus(self, cache_mode: str = "dual") -> list[float]:
        return sorted((p.tau for p in self.curve(cache_mode)), reverse=True)

    def to_json(self) -> str:
        raw = asdict(self)
        raw.pop("_memo")
        return json.dumps(raw, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> QualityProfile:
        raw = json.loads(text)
        points = {m: [QualityPoint(**p) for p in pts] for m, pts in raw.pop("points").items()}
        return cls(points=points, **raw)

    @classmethod
    def load(cls, path: str | Path) -> QualityProfile:
        return cls.from_json(Path(path).read_text())


def _mix(a: float, b: float, w: float) -> float:
    return a + w * (b - a)

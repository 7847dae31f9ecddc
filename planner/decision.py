"""The planner's answer: pools, routing weights and predictions. Immutable, JSON-round-trippable.

A pool is every instance of one configuration (TP degree, default τ, batch cap); the gateway
draws a pool for each request of class c with probability `routing[c][pool_id] / Σ routing[c]`.
`shed[c]` is the share of class c the plan cannot serve within its SLO: admission is expected to
reject it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from planner.inputs import ConfigKey


class PlanStatus(StrEnum):
    OPTIMAL = "optimal"  # solved to the gap tolerance
    FEASIBLE = "feasible"  # time limit hit with an incumbent and no previous plan to keep
    KEPT_PREVIOUS = "kept_previous"  # solve failed or timed out: the previous plan stands
    FAILED = "failed"  # solve failed and there was no previous plan


@dataclass(frozen=True, slots=True)
class PoolPlan:
    pool_id: str
    tp: int
    tau: float  # default threshold of the pool's instances
    tau_floor: float  # deadline-aware τ control never goes below this
    num_instances: int
    max_batch_size: int  # batch cap of the pool's instances

    @property
    def num_gpus(self) -> int:
        return self.tp * self.num_instances


@dataclass(frozen=True, slots=True)
class PlanDecision:
    status: PlanStatus
    reason: str
    pools: tuple[PoolPlan, ...] = ()
    routing: dict[str, dict[str, float]] = field(default_factory=dict)  # class → pool → share
    shed: dict[str, float] = field(default_factory=dict)  # class → share left unserved
    attainment: dict[str, float] = field(default_factory=dict)  # class → predicted P(SLO met)
    accuracy: float = 0.0  # predicted, averaged over the served load
    goodput_rps: float = 0.0  # predicted SLO-meeting requests/s (unweighted)
    objective: float = 0.0
    gap: float = 0.0  # relative optimality gap the solver proved
    num_gpus: int = 0
    moved_gpus: int = 0  # GPUs whose TP group is torn down vs the previous plan
    retuned_gpus: int = 0  # GPUs that only change pool τ
    build_ms: float = 0.0
    solve_ms: float = 0.0
    model_size: dict[str, int] = field(default_factory=dict)

    @property
    def gpus_used(self) -> int:
        return sum(p.num_gpus for p in self.pools)

    def instance_counts(self) -> dict[ConfigKey, int]:
        """Configuration → instances: the `current` input of the next plan."""
        return {ConfigKey(p.tp, p.tau, p.max_batch_size): p.num_instances for p in self.pools}

    def kept(self, reason: str, build_ms: float = 0.0, solve_ms: float = 0.0) -> PlanDecision:
        """This plan, re-issued because a new solve failed for `reason`."""
        return replace(
            self, status=PlanStatus.KEPT_PREVIOUS, reason=reason, moved_gpus=0,
            retuned_gpus=0, build_ms=build_ms, solve_ms=solve_ms,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = str(self.status)
        out["gpus_used"] = self.gpus_used
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> PlanDecision:
        raw = dict(raw)
        raw.pop("gpus_used", None)
        pools = tuple(PoolPlan(**p) for p in raw.pop("pools", ()))
        return cls(status=PlanStatus(raw.pop("status")), pools=pools, **raw)

    @classmethod
    def from_json(cls, text: str) -> PlanDecision:
        return cls.from_dict(json.loads(text))

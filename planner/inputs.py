"""What the planner decides from: load per SLO class, the GPUs, the profiles, the current plan.

Pure data. `fetch_inputs` (Redis) lives in the Celery shell (planner/tasks.py), so everything
here can be built by hand in tests, by the what-if command and by the simulator.

Units: rates in requests/s, latencies in ms, accuracy as a fraction (0.792 = 79.2 %), so
"1 point" of accuracy is 0.01.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from common.costmodel import CostModel
from common.quality import QualityProfile

REFERENCE_TAU = 0.9  # the accuracy budget is measured against this threshold
_POOL_ID = re.compile(r"tp(?P<tp>\d+)-tau(?P<tau>[0-9.]+)-b(?P<b>\d+)")


@dataclass(frozen=True, slots=True)
class SloClass:
    name: str
    slo_ms: float  # end-to-end deadline: arrival + slo_ms
    rate_rps: float  # forecast arrival rate
    weight: float = 1.0  # value of one SLO-meeting request of this class
    tau_floor: float = 0.0  # the class never runs below this threshold
    gen_tokens: int | None = None  # class-typical answer length; None → input default
    prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True, order=True)
class ConfigKey:
    """One instance configuration, and so one pool: TP degree × default τ × batch cap."""

    tp: int
    tau: float
    batch_size: int

    @property
    def pool_id(self) -> str:
        return f"tp{self.tp}-tau{self.tau:.2f}-b{self.batch_size}"

    @classmethod
    def parse(cls, pool_id: str) -> ConfigKey:
        """Inverse of `pool_id`: "tp4-tau0.90-b32" → ConfigKey(4, 0.9, 32)."""
        m = _POOL_ID.fullmatch(pool_id)
        if m is None:
            raise ValueError(f"not a planner pool id: {pool_id!r} (want e.g. tp4-tau0.90-b32)")
        return cls(int(m["tp"]), float(m["tau"]), int(m["b"]))


@dataclass(frozen=True, slots=True)
class PlannerInput:
    classes: tuple[SloClass, ...]
    gpus_per_node: tuple[int, ...]  # live GPUs on each node; their sum is the GPU budget
    cost_model: CostModel
    quality: QualityProfile
    tp_degrees: tuple[int, ...] = (1, 2, 4, 8)  # each must divide every larger one
    tau_ladder: tuple[float, ...] = ()  # () → every τ the quality profile measured
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)  # batch caps a pool may get
    utilisations: tuple[float, ...] = (0.5, 0.7, 0.85, 0.95)  # load levels, see capacity.py
    current: Mapping[ConfigKey, int] = field(default_factory=dict)  # instances now
    current_routing: Mapping[str, Mapping[ConfigKey, float]] = field(default_factory=dict)
    accuracy_budget_pts: float = 1.0  # served load averages ≥ acc(τ 0.9) − this/100
    accuracy_floor: float | None = None  # explicit floor; overrides the budget
    prompt_tokens: int = 64
    gen_tokens: int | None = None  # None → the quality profile's gen_length
    block_length: int | None = None  # None → the quality profile's block_length
    cache_mode: str = "dual"
    service_margin: float = 1.1  # predicted service time × this (cost model error headroom)
    service_cv: float = 0.15  # spread of one request's service time around the mean
    min_attainment: float = 0.5  # never route a class where it would meet its SLO less often
    min_rate_rps: float = 1e-3  # idle classes still get a route
    move_penalty: float = 0.05  # per GPU regrouped, × the mean weighted rate per GPU
    retune_penalty: float = 0.005  # per GPU whose pool τ changes (no regroup)
    gpu_cost: float = 1e-4  # per GPU used: keeps unneeded instances off
    routing_penalty: float = 1e-3  # per share of a class's weighted rate routed away from now
    allow_shed: bool = True  # may the plan leave load unserved (admission rejects it)?

    @property
    def num_gpus(self) -> int:
        return sum(self.gpus_per_node)

    def taus(self) -> tuple[float, ...]:
        return self.tau_ladder or tuple(self.quality.taus(self.cache_mode))

    def floor(self) -> float:
        """Least load-weighted accuracy the served traffic may have."""
        if self.accuracy_floor is not None:
            return self.accuracy_floor
        ref = self.quality.at(REFERENCE_TAU, self.cache_mode).accuracy
        return ref - self.accuracy_budget_pts / 100.0

    def class_gen_tokens(self, cls: SloClass) -> int:
        return cls.gen_tokens or self.gen_tokens or self.quality.gen_length

    def class_canvas_len(self, cls: SloClass) -> int:
        prompt = cls.prompt_tokens if cls.prompt_tokens is not None else self.prompt_tokens
        return prompt + self.class_gen_tokens(cls)

    def block_len(self) -> int:
        return self.block_length or self.quality.block_length

    def configs(self) -> list[ConfigKey]:
        return [
            ConfigKey(d, t, b)
            for d in sorted(self.tp_degrees)
            for t in self.taus()
            for b in sorted(self.batch_sizes)
        ]


def nodes_of(num_gpus: int, gpus_per_node: int = 8) -> tuple[int, ...]:
    """`num_gpus` GPUs packed onto nodes of `gpus_per_node` (the last node may be smaller)."""
    full, rest = divmod(num_gpus, gpus_per_node)
    return (gpus_per_node,) * full + ((rest,) if rest else ())


def validate(inp: PlannerInput) -> list[str]:
    """Problems that make the input unusable; [] when it is fine."""
    errors: list[str] = []
    if not inp.classes:
        errors.append("no SLO classes")
    for c in inp.classes:
        if c.slo_ms <= 0 or c.rate_rps < 0 or c.weight < 0:
            errors.append(f"class {c.name}: slo_ms > 0, rate_rps ≥ 0 and weight ≥ 0 required")
    degrees = sorted(inp.tp_degrees)
    if not degrees or degrees[0] < 1:
        errors.append("tp_degrees must be positive")
    elif any(b % a for a, b in zip(degrees, degrees[1:], strict=False)):
        errors.append(f"tp_degrees {degrees}: each must divide the next (e.g. 1,2,4,8)")
    if not inp.batch_sizes or min(inp.batch_sizes) < 1:
        errors.append("batch_sizes must be ≥ 1")
    if not inp.utilisations or any(u <= 0 or u >= 1 for u in inp.utilisations):
        errors.append("utilisations must lie in (0, 1)")
    if any(g < 0 for g in inp.gpus_per_node):
        errors.append("negative GPU count on a node")
    return errors

"""Deadline feasibility at submit (issue 5): can this request still make its deadline at its
class's τ floor, given the work queued ahead of it and the pool's service rate?

wait_ms    = (requests queued ahead in the pool) / (pool service rate, req/s)
service_ms = steps at the floor τ × step time of a lone request (cost model)
Infeasible when arrival + wait + service > deadline. The service rate is what the pool's
workers measured (finished requests per second, in their heartbeats); before any has finished,
the cost model's estimate per live worker stands in. Without a cost model nothing is rejected.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from common.config import SloClassCfg
from common.costmodel import CostModel
from common.quality import QualityProfile
from common.schemas import RequestRecord

CACHE_S = 0.5  # pool service rate is re-read at most this often


@dataclass(slots=True)
class PoolRate:
    rps: float
    num_workers: int
    at_s: float


class DeadlineCheck:
    def __init__(self, model_dir: Path, classes: list[SloClassCfg], max_batch_size: int) -> None:
        cost_path, prof_path = model_dir / "costmodel.json", model_dir / "quality_profile.json"
        self.cost = CostModel.load(cost_path) if cost_path.exists() else None
        self.profile = QualityProfile.load(prof_path) if prof_path.exists() else None
        self.classes = {c.name: c for c in classes}
        self.max_batch_size = max_batch_size
        self._rates: dict[str, PoolRate] = {}

    @property
    def enabled(self) -> bool:
        return self.cost is not None

    def service_ms(self, rec: RequestRecord, batch_size: int = 1) -> float:
        """Predicted decode time at the class floor in a batch of `batch_size`."""
        assert self.cost is not None
        floor = self._floor(rec)
        num_blocks = rec.max_tokens // rec.block_length
        if self.profile is not None:  # measured steps per answer (answers may end at an EOS)
            point = self.profile.at(floor)
            tps = max(point.tokens_per_step, 1.0)
            share = rec.max_tokens / self.profile.gen_length
            steps = max(num_blocks, point.steps_per_answer * share)
        else:
            tps = 3.0
            steps = max(num_blocks, rec.max_tokens / tps)
        canvas = len(rec.prompt_ids) + rec.max_tokens
        step_ms = self.cost.batch_step_ms(
            batch_size, canvas, rec.block_length, rec.block_length / tps
        )
        return steps * step_ms

    def estimated_rps(self, rec: RequestRecord, num_workers: int) -> float:
        """Cost-model throughput of `num_workers` full batches, for before anything finished."""
        b = self.max_batch_size
        return num_workers * b / (self.service_ms(rec, b) / 1e3)

    def ahead_limit(self, rec: RequestRecord, rate: PoolRate | None) -> int | None:
        """The most requests that may be served before `rec` for it to still make its deadline
        (−1: not even with none); None: no check (no cost model, or no service rate known).
        The submit script compares it with the queue atomically, in the enqueue's round trip:
        a separate count would cost the gateway a round trip per submit."""
        if self.cost is None:
            return None
        rps = rate.rps if rate and rate.rps > 0 else 0.0
        if rps <= 0 and rate and rate.num_workers:
            rps = self.estimated_rps(rec, rate.num_workers)
        slack_ms = rec.deadline_ms - rec.arrival_ms - self.service_ms(rec)
        if slack_ms < 0:
            return -1
        return math.floor(slack_ms * rps / 1e3) if rps > 0 else None

    def rate(self, pool: str) -> tuple[PoolRate | None, bool]:
        """The pool's last known service rate, and whether it is due for a refresh."""
        r = self._rates.get(pool)
        return r, r is None or time.monotonic() - r.at_s >= CACHE_S

    def remember_rate(self, pool: str, rps: float, num_workers: int) -> PoolRate:
        self._rates[pool] = PoolRate(rps, num_workers, time.monotonic())
        return self._rates[pool]

    def late_action(self, rec: RequestRecord) -> str:
        cls = self.classes.get(rec.slo_class)
        return cls.late_action if cls else "serve"

    def _floor(self, rec: RequestRecord) -> float:
        cls = self.classes.get(rec.slo_class)
        return max(cls.tau_floor if cls else 0.9, rec.min_threshold)

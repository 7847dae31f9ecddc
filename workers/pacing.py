"""A device emulated on the CPU: every step lasts at least as long as a cost model says.

For end-to-end runs of what the planner decides for GPUs (tests, measured validation): the
model, scheduler, Redis, gateway and planner are all real, only the device time of a step is
paced to the cost model's prediction for what the step ran (its rows, tokens and phase mix, at
the group's TP degree). The paced time is what the step reports, so the worker's online cost
correction, its service rate and the planner's profile all see the emulated device.
Off unless `engine.pace_cost_model` names a cost model file.
"""

from __future__ import annotations

import time
from typing import Any

from common.costmodel import CostModel, shape_of
from workers.sched.plan import StepPlan, StepResult


class PacedRunner:
    def __init__(self, inner: Any, cost: CostModel, tp: int = 1) -> None:
        self.inner, self.cost, self.tp = inner, cost, tp

    def execute(self, plan: StepPlan) -> StepResult:
        t0 = time.perf_counter()
        result: StepResult = self.inner.execute(plan)
        full_ms, reuse_ms = self.cost.sub_batch_ms(shape_of(result), self.tp)
        result.full_s = max(result.full_s, full_ms / 1e3)
        result.reuse_s = max(result.reuse_s, reuse_ms / 1e3)
        left_s = result.step_s - (time.perf_counter() - t0)
        if left_s > 0:
            time.sleep(left_s)
        return result

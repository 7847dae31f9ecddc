"""How well the cost model predicts: relative errors of step and completion-time predictions,
kept over a rolling window so a worker can export them (and the benchmark can quote them).
`step` is a step's wall time (start to the next back-to-back start: what a request waits),
`forward` the forwards alone (what the offline fit models). Errors are signed, (predicted −
measured) / measured: the summary gives the median absolute error and the median signed one
(> 0: predictions too slow, i.e. pessimistic)."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

WINDOW = 4000


def _window() -> deque[float]:
    return deque(maxlen=WINDOW)


@dataclass(slots=True)
class PredictionLog:
    step: deque[float] = field(default_factory=_window)
    completion: deque[float] = field(default_factory=_window)
    forward: deque[float] = field(default_factory=_window)

    def record_step(self, predicted_ms: float, measured_ms: float) -> None:
        _record(self.step, predicted_ms, measured_ms)

    def record_completion(self, predicted_ms: float, measured_ms: float) -> None:
        _record(self.completion, predicted_ms, measured_ms)

    def record_forward(self, predicted_ms: float, measured_ms: float) -> None:
        _record(self.forward, predicted_ms, measured_ms)

    def summary(self) -> dict[str, float]:
        out = {}
        named = (("step", self.step), ("completion", self.completion), ("forward", self.forward))
        for name, errs in named:
            if errs:
                out[f"{name}_median_abs_error"] = statistics.median(map(abs, errs))
                out[f"{name}_median_signed_error"] = statistics.median(errs)
                out[f"{name}_samples"] = float(len(errs))
        return out


def _record(errs: deque[float], predicted_ms: float, measured_ms: float) -> None:
    if measured_ms > 0:
        errs.append((predicted_ms - measured_ms) / measured_ms)

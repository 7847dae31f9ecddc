"""A benchmark workload: arrivals × SLO classes × demo-task problems, the same for the real
system (loadgen/bench.py) and the simulator (loadgen/simulate.py).

Trace lengths map onto the demo task by quantile: a request whose prompt is at the trace's
p-th percentile gets a held-out problem whose prompt is at the p-th percentile of the demo
task's prompt lengths (the answer length follows the problem; the canvas is fixed at 64).
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from pathlib import Path

from common import task
from loadgen import traces

SHARED = Path(__file__).resolve().parents[2] / "shared"
TRACE_FILES = {
    "azure-conv": SHARED / "traces" / "AzureLLMInferenceTrace_conv.csv",
    "azure-code": SHARED / "traces" / "AzureLLMInferenceTrace_code.csv",
}
ARRIVALS = ("poisson", "bursty", *TRACE_FILES)


@dataclass(slots=True, frozen=True)
class SloClass:
    name: str
    slo_ms: float
    tau_floor: float = 0.7
    late_action: str = "serve"
    weight: float = 1.0


@dataclass(slots=True, frozen=True)
class Planned:
    req_id: str
    t_s: float
    slo_class: SloClass
    problem: task.Problem
    gen_length: int = task.GEN_LENGTH
    block_length: int = 16


def build(
    arrival: str, rate_per_s: float, duration_s: float, mix: dict[str, float],
    classes: dict[str, SloClass], seed: int = 0,
) -> list[Planned]:  # fmt: skip
    rng = random.Random(seed)
    times, prompt_q = _arrivals(arrival, rate_per_s, duration_s, rng)
    names = traces.assign_classes(len(times), mix, rng)
    pool = sorted(task.problems(seed=seed, split="test", n=max(200, len(times))),
                  key=lambda p: len(p.prompt))  # fmt: skip
    out = []
    for i, (t, q, name) in enumerate(zip(times, prompt_q, names, strict=True)):
        problem = pool[min(int(q * len(pool)), len(pool) - 1)]
        out.append(Planned(f"w{seed}-{i:05d}", t, classes[name], problem))
    return out


def _arrivals(
    arrival: str, rate: float, duration_s: float, rng: random.Random
) -> tuple[list[float], list[float]]:
    """Arrival times and each request's prompt-length quantile in [0, 1)."""
    if arrival in TRACE_FILES:
        rows = traces.read_azure(TRACE_FILES[arrival])
        lengths = sorted(p for _, p, _ in rows)
        window = traces.scale_to_rate(rows, rate, duration_s, offset_s=_busy_offset(rows, rate))
        return [t for t, _, _ in window], [
            bisect.bisect_left(lengths, p) / len(lengths) for _, p, _ in window
        ]
    if arrival == "poisson":
        times = traces.poisson(rate, duration_s, rng)
    elif arrival == "bursty":
        times = traces.bursty(rate, duration_s, rng)
    else:
        raise ValueError(f"unknown arrival process {arrival!r}; choose from {ARRIVALS}")
    return times, [rng.random() for _ in times]


def _busy_offset(rows: list[tuple[float, int, int]], rate: float) -> float:
    """Start the window where the trace runs at about its mean rate, not in a quiet stretch
    (the first minutes of both traces are far below average)."""
    span = rows[-1][0] - rows[0][0]
    return 0.25 * span * (len(rows) / span) / rate


def parse_classes(text: str) -> dict[str, SloClass]:
    """'interactive=300:0.7:drop,standard=1500:0.7:serve' (name=slo_ms[:floor[:action]])."""
    out = {}
    for part in text.split(","):
        name, _, spec = part.partition("=")
        fields = spec.split(":")
        out[name] = SloClass(
            name, float(fields[0]),
            float(fields[1]) if len(fields) > 1 else 0.7,
            fields[2] if len(fields) > 2 else "serve",
        )  # fmt: skip
    return out

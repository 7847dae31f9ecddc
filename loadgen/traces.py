"""Arrival processes: Azure LLM inference traces (time-scaled) and synthetic Poisson / bursty.

An `Arrival` says when a request comes, how long its prompt and answer are in the trace's own
tokens, and its SLO class. Mapping trace lengths onto the demo task's sizes happens in the
benchmark (loadgen/bench.py), so the arrival process and the workload stay separable.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(slots=True, frozen=True)
class Arrival:
    t_s: float  # seconds from the start of the run
    prompt_tokens: int
    output_tokens: int
    slo_class: str


def read_azure(path: str | Path) -> list[tuple[float, int, int]]:
    """(seconds since the first request, context tokens, generated tokens) per row."""
    rows = []
    with open(path, newline="") as f:
        for rec in csv.DictReader(f):
            ts = datetime.fromisoformat(rec["TIMESTAMP"][:26])
            rows.append((ts, int(rec["ContextTokens"]), int(rec["GeneratedTokens"])))
    t0 = rows[0][0]
    return [((ts - t0).total_seconds(), p, o) for ts, p, o in rows]


def scale_to_rate(
    rows: list[tuple[float, int, int]], rate_per_s: float, duration_s: float, offset_s: float = 0.0
) -> list[tuple[float, int, int]]:
    """Stretch time so the trace's mean rate becomes `rate_per_s`, keep the burst shape, and
    take `duration_s` of it starting `offset_s` into the scaled trace."""
    span = rows[-1][0] - rows[0][0]
    factor = (len(rows) / span) / rate_per_s  # >1 slows the trace down
    scaled = [(t * factor - offset_s, p, o) for t, p, o in rows]
    return [r for r in scaled if 0.0 <= r[0] < duration_s]


def poisson(rate_per_s: float, duration_s: float, rng: random.Random) -> list[float]:
    t, out = 0.0, []
    while True:
        t += rng.expovariate(rate_per_s)
        if t >= duration_s:
            return out
        out.append(t)


def bursty(
    rate_per_s: float, duration_s: float, rng: random.Random, burst_factor: float = 4.0,
    period_s: float = 10.0,
) -> list[float]:  # fmt: skip
    """On/off modulated Poisson with the given mean rate: a fifth of each period runs at
    `burst_factor` × the calm rate."""
    calm = rate_per_s / (0.8 + 0.2 * burst_factor)
    t, out = 0.0, []
    while t < duration_s:
        in_burst = (t % period_s) < 0.2 * period_s
        t += rng.expovariate(calm * (burst_factor if in_burst else 1.0))
        if t < duration_s:
            out.append(t)
    return out


def assign_classes(n: int, mix: dict[str, float], rng: random.Random) -> list[str]:
    names, weights = list(mix), list(mix.values())
    return rng.choices(names, weights=weights, k=n)


def parse_mix(text: str) -> dict[str, float]:
    """'interactive=0.3,standard=0.7' → {'interactive': 0.3, 'standard': 0.7}"""
    out = {}
    for part in text.split(","):
        name, _, share = part.partition("=")
        if not share:
            raise ValueError(f"class mix entry {part!r} is not NAME=SHARE")
        out[name.strip()] = float(share)
    return out

"""Reduced-cost bound tightening: narrow every variable to where a plan better than a target lies.

Take the LP relaxation's optimum UB and reduced costs rc (a maximisation). LP duality gives, for
every point z the LP allows (so every plan), obj(z) ≤ UB − Σ_j |rc_j| · dist_j(z), where
dist_j is z_j's distance from the bound the LP optimum sits at (the lower bound where rc_j < 0,
the upper where rc_j > 0), and every term is ≥ 0. So a plan better than UB − slack has
|rc_j| · dist_j < slack for every j: z_j stays within slack / |rc_j| of the LP's bound.

For integer n this is the usual reduced-cost fixing (HiGHS does it too, from its own LP). The
gain is on the continuous routing shares x: HiGHS derives its cuts (which complement variables
against their bounds) from much tighter bounds; with the incumbent at hand, the bench's hardest
64-GPU instance proves in about 35 ms instead of 95.
The narrowed MIP proves nothing about plans worth ≤ UB − slack, so a caller must take
max(its dual bound, UB − slack) as the bound on the optimum.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from ortools.math_opt.python import mathopt

MIN_REDUCED = 1e-9  # smaller reduced costs are LP noise: such a variable stays as it is
SAFETY = 1e-6  # widen each narrowed range by this share (LP dual feasibility is inexact)


@dataclass(frozen=True, slots=True)
class Priced:
    """A variable the LP optimum holds at a finite bound with a nonzero reduced cost."""

    var: mathopt.Variable
    reduced: float  # < 0: the LP sits at `lower`; > 0: at `upper`
    lower: float
    upper: float
    integer: bool


def priced(reduced: Mapping[mathopt.Variable, float]) -> list[Priced]:
    """The variables narrowing can move, with their bounds read once (reading a bound through
    MathOpt costs microseconds, and the stages narrow the same variables more than once)."""
    out = []
    for var, rc in reduced.items():
        if abs(rc) < MIN_REDUCED:
            continue
        lower, upper = var.lower_bound, var.upper_bound
        if math.isfinite(lower if rc < 0 else upper):
            out.append(Priced(var, rc, lower, upper, var.integer))
    return out


@contextmanager
def narrowed(items: list[Priced], slack: float) -> Iterator[int]:
    """Within the block, each variable's bounds are cut to where a plan worth more than
    UB − `slack` can put it; yields how many variables were narrowed. The bounds in `items`
    are restored after the block (so narrow before any other temporary bound change)."""
    changed: list[Priced] = []
    try:
        for it in items if slack >= 0 else ():
            room = slack / abs(it.reduced) * (1.0 + SAFETY) + SAFETY
            if it.integer:
                room = float(math.floor(room))
            if it.reduced < 0 and it.lower + room < it.upper:
                it.var.upper_bound = it.lower + room
                changed.append(it)
            elif it.reduced > 0 and it.upper - room > it.lower:
                it.var.lower_bound = it.upper - room
                changed.append(it)
        yield len(changed)
    finally:
        for it in changed:
            it.var.lower_bound, it.var.upper_bound = it.lower, it.upper

"""Reduced-cost bound tightening: narrow every variable to where a plan better than a target lies.

Take the LP relaxation's optimum UB and reduced costs rc (a maximisation). LP duality gives, for
every point z the LP allows (so every plan), obj(z) ≤ UB − Σ_j |rc_j| · dist_j(z), where
dist_j is z_j's distance from the bound the LP optimum sits at (the lower bound where rc_j < 0,
the upper where rc_j > 0), and every term is ≥ 0. So a plan better than UB − slack has
|rc_j| · dist_j < slack for every j: z_j stays within slack / |rc_j| of the LP's bound.

For integer n this is the usual reduced-cost fixing (HiGHS does it too, from its own LP). The
gain is on the continuous routing shares x: with their bounds narrowed, HiGHS's presolve drops
most of them and its cuts (which complement variables against their bounds) get much tighter.
The narrowed MIP proves nothing about plans worth ≤ UB − slack, so a caller must take
max(its dual bound, UB − slack) as the bound on the optimum.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from ortools.math_opt.python import mathopt

MIN_REDUCED = 1e-9  # smaller reduced costs are LP noise: such a variable stays as it is
SAFETY = 1e-6  # widen each narrowed range by this share (LP dual feasibility is inexact)


@contextmanager
def narrowed(reduced: Mapping[mathopt.Variable, float], slack: float) -> Iterator[int]:
    """Within the block, each variable's bounds are cut to where a plan worth more than
    UB − `slack` can put it; yields how many variables were narrowed. Bounds are restored."""
    saved: dict[mathopt.Variable, tuple[float, float]] = {}
    try:
        for var, rc in reduced.items():
            room = _room(var, rc, slack)
            if room is None:
                continue
            lo, hi = var.lower_bound, var.upper_bound
            if rc < 0 and lo + room < hi:
                saved[var] = (lo, hi)
                var.upper_bound = lo + room
            elif rc > 0 and hi - room > lo:
                saved[var] = (lo, hi)
                var.lower_bound = hi - room
        yield len(saved)
    finally:
        for var, (lo, hi) in saved.items():
            var.lower_bound, var.upper_bound = lo, hi


def _room(var: mathopt.Variable, rc: float, slack: float) -> float | None:
    """How far from its LP bound `var` may move, or None when that bound is not finite."""
    if abs(rc) < MIN_REDUCED or slack < 0:
        return None
    at = var.lower_bound if rc < 0 else var.upper_bound
    if not math.isfinite(at):
        return None
    room = slack / abs(rc) * (1.0 + SAFETY) + SAFETY
    return float(math.floor(room)) if var.integer else room

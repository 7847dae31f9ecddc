"""The plan running now, priced under the new inputs: the re-plan's first incumbent and its
preferred answer.

Near-optimal plans often tie to within the 0.1 % gap (a pool at batch cap 8 or 16, 8 instances
of one and 5 of another or the other way round), and the move and retune penalties are worth
no more than that gap: on 64 GPUs a retuned GPU costs about 0.01 % of the objective and a
moved one about 0.1 % (less on larger clusters). Left to itself the solver returns whichever
near tie it proves first, and consecutive re-plans with slowly drifting rates flip between
them. So the current instance counts are priced first (an LP over the routing, counts fixed);
the re-plan keeps them whenever they are proven within the gap, and moves only for a plan
better by more.
"""

from __future__ import annotations

from collections.abc import Mapping

from ortools.math_opt.python import mathopt

from planner.inputs import ConfigKey
from planner.model import MipHandle

Values = dict[mathopt.Variable, float]


def price_counts(
    h: MipHandle, counts: Mapping[ConfigKey, int], params: mathopt.SolveParameters
) -> tuple[Values, float] | None:
    """(values, objective) of the best routing with the instance counts fixed to `counts`, or
    None when they cannot run here (a pool the model lacks, GPUs gone, nothing feasible)."""
    if not any(counts.values()) or any(n > 0 and k not in h.n for k, n in counts.items()):
        return None
    if any(counts.get(k, 0) > n.upper_bound for k, n in h.n.items()):
        return None
    saved = {n: (n.lower_bound, n.upper_bound) for n in h.n.values()}
    try:  # counts fixed: an LP (solved as one, so no MIP gap tolerance applies)
        for k, n in h.n.items():
            n.lower_bound = n.upper_bound = float(counts.get(k, 0))
            n.integer = False
        res = mathopt.solve(h.model, mathopt.SolverType.HIGHS, params=params)
    finally:
        for n, (lo, hi) in saved.items():
            n.lower_bound, n.upper_bound = lo, hi
            n.integer = True
    if res.termination.reason != mathopt.TerminationReason.OPTIMAL:
        return None
    return res.variable_values(), res.objective_value()

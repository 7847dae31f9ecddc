"""Exact pruning of dominated configurations before the MIP is built. Pure (numpy, no solver).

Fewer configurations mean fewer integer variables, and most of the planner's solve time is
branching on them (small clusters, where the LP relaxation is loose, most of all).

Configuration A (TP degree d) dominates B (TP degree D, a multiple of d; m = D/d) when A's
accuracy is ≥ B's and every cell B has, (class c, level ρ) with effective capacity e = ρ·μ and
attainment p, is matched by a cell of A for the same class, at any level ρ', with m·e' ≥ e and
p' ≥ p (per GPU: e'/d ≥ e/D). Exact: the D GPUs of an instance of B can become m instances of
A instead; each slice of load B planned at ρ moves to A's level ρ', where it occupies
λx/(ρ'μ_A) ≤ m·λx/(ρμ_B) instances and meets its SLO at least as often; routing, GPUs and the
accuracy margin are no worse, and the node rows only loosen (groups of d fit wherever a group
of D did). Across degrees (m > 1) this holds only while the current plan runs no group of
degree D: tearing one down costs the move penalty. Configurations the current plan runs or
routes to are always kept (the move, retune and rerouting penalties depend on them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from planner.inputs import ConfigKey, PlannerInput

if TYPE_CHECKING:
    from planner.capacity import Estimate

Cells = Mapping[ConfigKey, Mapping[tuple[int, float], "Estimate"]]


def undominated(
    inp: PlannerInput, cells: Cells, accuracy: Mapping[ConfigKey, float]
) -> list[ConfigKey]:
    """Configurations (sorted) that no other configuration dominates, plus the current ones."""
    configs = sorted(cells)
    acc = np.array([accuracy[k] for k in configs])
    ge = (acc[:, None] >= acc[None, :]) & _may_stand_in(inp, configs)
    ge[ge] = _covers(inp, configs, cells, *np.nonzero(ge))  # cells compared only where it matters
    # ge[a, b]: a is at least as good as b. Equals (ge both ways) break toward the earlier one,
    # so exactly one of a tied group stays; this keeps the relation a strict partial order.
    earlier = np.tri(len(configs), k=-1, dtype=bool).T  # earlier[a, b]: a < b
    dom = ge & (~ge.T | earlier)
    np.fill_diagonal(dom, False)
    kept = in_use(inp)
    return [k for j, k in enumerate(configs) if not dom[:, j].any() or k in kept]


def _may_stand_in(inp: PlannerInput, configs: list[ConfigKey]) -> npt.NDArray[np.bool_]:
    """[a, b]: instances of a may replace an instance of b GPU for GPU: same degree, or a
    smaller one dividing b's while the current plan runs no group of b's degree."""
    tp = np.array([k.tp for k in configs])
    degrees = running_degrees(inp)
    running = np.array([k.tp in degrees for k in configs])
    smaller_divisor = (tp[None, :] % tp[:, None] == 0) & (tp[:, None] < tp[None, :])
    return (tp[:, None] == tp[None, :]) | (smaller_divisor & ~running[None, :])


def running_degrees(inp: PlannerInput) -> set[int]:
    """TP degrees the current plan runs groups of (tearing one down costs the move penalty)."""
    return {k.tp for k, n in inp.current.items() if n > 0}


def _covers(
    inp: PlannerInput, configs: list[ConfigKey], cells: Cells,
    a: npt.NDArray[np.intp], b: npt.NDArray[np.intp],
) -> npt.NDArray[np.bool_]:  # fmt: skip
    """For each pair (a[i], b[i]): every cell of b is matched (e per GPU and p both ≥) by a
    cell of a, same class. Per GPU, e'/d ≥ e/D is m·e' ≥ e for m = D/d instances of a standing
    in for one of b."""
    capacity, attainment = _cell_arrays(inp, configs, cells)  # [K, C, L] each, −inf: no cell
    # capacity is per GPU (ρμ/d), so one comparison serves same-degree and cross-degree pairs
    # [pair, c, l_b, l_a]: a's level l_a matches b's level l_b
    match = (capacity[a][:, :, None, :] >= capacity[b][:, :, :, None]) & (
        attainment[a][:, :, None, :] >= attainment[b][:, :, :, None]
    )
    return match.any(axis=3).all(axis=(1, 2))  # a missing cell (−inf) of b is matched by any


def _cell_arrays(
    inp: PlannerInput, configs: list[ConfigKey], cells: Cells
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    levels = {rho: i for i, rho in enumerate(sorted(inp.utilisations))}
    shape = (len(configs), len(inp.classes), len(levels))
    capacity, attainment = np.full(shape, -np.inf), np.full(shape, -np.inf)
    for row, k in enumerate(configs):
        for (c, rho), est in cells[k].items():
            capacity[row, c, levels[rho]] = rho * est.rate_rps / k.tp
            attainment[row, c, levels[rho]] = est.attainment
    return capacity, attainment


def in_use(inp: PlannerInput) -> set[ConfigKey]:
    """Configurations the current plan runs or routes to: always kept."""
    routed = {k for shares in inp.current_routing.values() for k, s in shares.items() if s > 0}
    return {k for k, n in inp.current.items() if n > 0} | routed

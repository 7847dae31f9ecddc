"""Capacity model: what one instance of a configuration delivers to one SLO class.

A configuration (one pool) is (TP degree d, default threshold τ, batch cap b). For class c
(answer length G_c tokens, canvas L_c, block length B):

    steps      S = max(G_c / tokens_per_step(τ), ⌈G_c / B⌉)        quality profile; ≥ 1 per block
    step time  s = CostModel.batch_step_ms(b, L_c, B, S / ⌈G_c/B⌉, cache_mode, tp=d)
    service    T = margin · S · s                                   ms a request spends in a batch
    rate       μ = 1000 · b / T                                     req/s of a full batch

An instance runs continuous batching with up to b requests in flight; each batch slot is a
server with deterministic service time T, so the instance is an M/D/b queue. Loaded to
utilisation ρ (offered load = ρ·μ), with Erlang's C(b, ρb) = P(a request waits):

    mean wait  W ≈ ½ · C · T / (b (1 − ρ))                          M/D/b ≈ half of M/M/b
    attainment p = P(W ≤ SLO − T) ≈ 1 − C · exp(−2 b (1 − ρ) (SLO − T) / T),   0 if T ≥ SLO

(the M/M/b waiting-time tail, with the exponent doubled for deterministic service, as
heavy-traffic approximations give for service-time variance 0). The operating points of a
configuration are a few utilisation levels ρ; the MIP cuts each pool's load into slices, each
planned at one level and credited that level's p (planner/model.py). The numbers are
conservative: a batch that is not full steps faster than s, and a request's τ may drop under
load (deadline-aware τ control), which the plan does not count on.

Pruned here, exactly (no optimum is lost): cells whose p is below `min_attainment`, or whose τ
is below the class's floor; levels whose p is no better than a higher level's (more capacity,
same p); configurations another of the same TP degree dominates (planner/prune.py). p is kept
to 4 decimals, rounded down. Pure: no solver, no I/O. See docs/planner.md.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache

from planner.inputs import ConfigKey, PlannerInput, SloClass
from planner.prune import in_use, running_degrees, undominated

Cell = tuple[int, ConfigKey, float]  # (class index, configuration, utilisation level ρ)
P_GRID = 10_000  # attainment is kept to 4 decimals (rounded down)
MAX_BUSY = 0.999  # per-slot utilisation is capped below 1 for the queueing formulas


@dataclass(frozen=True, slots=True)
class Estimate:
    """One class on one instance of a configuration loaded to one utilisation level."""

    service_ms: float  # T: time in the batch
    rate_rps: float  # μ: requests/s one instance completes with a full batch
    wait_ms: float  # mean queueing delay at this utilisation
    attainment: float  # predicted P(latency ≤ SLO) at this utilisation

    @property
    def latency_ms(self) -> float:
        return self.wait_ms + self.service_ms


@dataclass(slots=True)
class CapacityTable:
    """Estimates the MIP may use: cells that pass the SLO and τ-floor filters, on
    configurations that no other configuration dominates."""

    cells: dict[Cell, Estimate]
    accuracy: dict[ConfigKey, float]
    configs: list[ConfigKey] = field(default_factory=list)


def steps_per_request(inp: PlannerInput, cls: SloClass, tau: float) -> float:
    gen = inp.class_gen_tokens(cls)
    tps = max(inp.quality.at(tau, inp.cache_mode).tokens_per_step, 1.0)
    return max(gen / tps, float(math.ceil(gen / inp.block_len())))


def service_ms(
    inp: PlannerInput, cls: SloClass, cfg: ConfigKey, occupancy: int | None = None,
    steps: float | None = None,
) -> float:  # fmt: skip
    """Time in the batch when `occupancy` requests share it (default: a full batch)."""
    steps = steps or steps_per_request(inp, cls, cfg.tau)
    num_blocks = math.ceil(inp.class_gen_tokens(cls) / inp.block_len())
    step_ms = inp.cost_model.batch_step_ms(
        occupancy or cfg.batch_size, inp.class_canvas_len(cls), inp.block_len(),
        steps / num_blocks, inp.cache_mode, cfg.tp,
    )  # fmt: skip
    return inp.service_margin * steps * step_ms


def interpolated(service_of: Callable[[int], float], n: float) -> float:
    """Service time at a fractional mean occupancy n ≥ 1: linear between whole batches."""
    lo = max(1, math.floor(n))
    frac = n - lo
    return service_of(lo) if frac <= 0 else (1 - frac) * service_of(lo) + frac * service_of(lo + 1)


def occupancy(service_of: Callable[[int], float], batch_size: int, rho: float) -> float:
    """The batch a request shares at utilisation ρ of full-batch capacity: itself plus the
    λ · T others in service (Little's law), n = 1 + λ · T(n) with λ = ρ · b / T(b), capped at b
    (a fuller batch steps slower, so iterate)."""
    arrivals_per_ms = rho * batch_size / service_of(batch_size)
    n = 1.0 + rho * batch_size
    for _ in range(6):
        new = min(float(batch_size), 1.0 + arrivals_per_ms * interpolated(service_of, n))
        if new == n:
            break  # a fixed point (often the cap b): further rounds change nothing
        n = new
    return n


@lru_cache(maxsize=4096)
def erlang_c(servers: int, utilisation: float) -> float:
    """P(an arrival waits) in an M/M/servers queue at per-server utilisation ρ < 1."""
    offered = utilisation * servers
    erlang_b = 1.0
    for k in range(1, servers + 1):  # stable recursion for Erlang B
        erlang_b = offered * erlang_b / (k + offered * erlang_b)
    return erlang_b / (1.0 - utilisation * (1.0 - erlang_b))


def queue_estimate(
    service: float, slo_ms: float, batch_size: int, rho: float,
    full_service: float | None = None, service_cv: float = 0.0,
) -> Estimate:  # fmt: skip
    """M/D/b numbers for service time `service` at per-slot utilisation ρ; capacity μ is that of
    a full batch (`full_service`, default `service`). With `service_cv` > 0 a request's own
    service time spreads normally around `service` (steps per request vary)."""
    wait_prob = erlang_c(batch_size, rho)
    wait = 0.5 * wait_prob * service / (batch_size * (1.0 - rho))
    slack = slo_ms - service
    if service_cv > 0:
        on_time = 0.5 * (1.0 + math.erf(slack / (service_cv * service * math.sqrt(2.0))))
    else:
        on_time = 1.0 if slack > 0 else 0.0
    decay = 2.0 * batch_size * (1.0 - rho) * max(slack, 0.0) / service
    p = max(0.0, on_time * (1.0 - wait_prob * math.exp(-decay)))
    return Estimate(service, 1000.0 * batch_size / (full_service or service), wait, p)


def level_estimate(
    service_of: Callable[[int], float], slo_ms: float, batch_size: int, rho: float,
    service_cv: float = 0.0,
) -> Estimate:  # fmt: skip
    """One class at utilisation level ρ (of full-batch capacity): a request shares the batch with
    fewer than b − 1 others on average, so steps are faster and each slot is busy λT/b of the
    time."""
    n = occupancy(service_of, batch_size, rho)
    service = interpolated(service_of, n)
    busy = min(rho * batch_size * service / service_of(batch_size) / batch_size, rho, MAX_BUSY)
    return queue_estimate(service, slo_ms, batch_size, busy, service_of(batch_size), service_cv)


def estimate(inp: PlannerInput, cls: SloClass, cfg: ConfigKey, rho: float) -> Estimate:
    service_of = _service_of(inp, cls, cfg)
    return level_estimate(service_of, cls.slo_ms, cfg.batch_size, rho, inp.service_cv)


TABLES_KEPT = 4
_tables: OrderedDict[str, CapacityTable] = OrderedDict()
_tables_lock = threading.Lock()


def cached_table(inp: PlannerInput) -> CapacityTable:
    """`build_table(inp)`, reused while nothing it reads changes. Consecutive re-plans mostly
    differ in the rates, which the table does not read, and building it is most of what a
    re-plan spends before solving (docs/planner.md). Callers only read the table."""
    key = _table_key(inp)
    with _tables_lock:  # a planner thread and, say, a what-if may plan at once
        table = _tables.get(key)
        if table is not None:
            _tables.move_to_end(key)
            return table
    table = build_table(inp)
    with _tables_lock:
        _tables[key] = table
        while len(_tables) > TABLES_KEPT:
            _tables.popitem(last=False)
    return table


def _table_key(inp: PlannerInput) -> str:
    """Everything `build_table` reads: the input less the classes' rates and weights, and of
    the current plan only what pruning keeps (pools in use, TP degrees running). The profiles
    are in it by value (their reprs hold every field the estimates read)."""
    classes = tuple(replace(c, rate_rps=0.0, weight=0.0) for c in inp.classes)
    rest = replace(inp, classes=(), current={}, current_routing={})
    return repr((classes, rest, sorted(in_use(inp)), sorted(running_degrees(inp))))


def build_table(inp: PlannerInput, prune: bool = True) -> CapacityTable:
    """`prune=False` keeps dominated levels and configurations (tests check pruning is exact)."""
    cells: dict[ConfigKey, dict[tuple[int, float], Estimate]] = {}
    accuracy: dict[ConfigKey, float] = {}
    steps = {(ci, t): steps_per_request(inp, c, t) for ci, c in enumerate(inp.classes)
             for t in inp.taus()}  # fmt: skip
    # A request's service time depends on its class, the TP degree, τ and the batch it shares,
    # not on the pool's batch cap (that only caps the occupancy): one memo per (class, TP, τ)
    # serves every cap, so the cost model runs once per occupancy, not once per pool.
    services: dict[tuple[int, int, float], Callable[[int], float]] = {}
    for cfg in inp.configs():
        accuracy[cfg] = inp.quality.at(cfg.tau, inp.cache_mode).accuracy
        found = _config_cells(inp, cfg, prune, steps, services)
        if found:
            cells[cfg] = found
    keep = undominated(inp, cells, accuracy) if prune else sorted(cells)
    table = CapacityTable(cells={}, accuracy=accuracy, configs=keep)
    for cfg in keep:
        for (ci, rho), est in cells[cfg].items():
            table.cells[(ci, cfg, rho)] = est
    return table


def _config_cells(
    inp: PlannerInput, cfg: ConfigKey, prune: bool, steps: dict[tuple[int, float], float],
    services: dict[tuple[int, int, float], Callable[[int], float]],
) -> dict[tuple[int, float], Estimate]:  # fmt: skip
    found: dict[tuple[int, float], Estimate] = {}
    for ci, cls in enumerate(inp.classes):
        if cfg.tau < cls.tau_floor:
            continue
        key = (ci, cfg.tp, cfg.tau)
        if key not in services:
            services[key] = _memo(_service_of(inp, cls, cfg, steps[(ci, cfg.tau)]))
        service = services[key]
        best_p = -1.0  # walking ρ down: a level is useful only if its p beats every higher ρ's
        for rho in sorted(inp.utilisations, reverse=True):
            est = level_estimate(service, cls.slo_ms, cfg.batch_size, rho, inp.service_cv)
            p = math.floor(est.attainment * P_GRID) / P_GRID  # round down: no false precision
            if p >= inp.min_attainment and p > 0 and (p > best_p or not prune):
                found[(ci, rho)] = Estimate(est.service_ms, est.rate_rps, est.wait_ms, p)
                best_p = p
    return found


def _service_of(
    inp: PlannerInput, cls: SloClass, cfg: ConfigKey, steps: float | None = None
) -> Callable[[int], float]:
    return lambda n: service_ms(inp, cls, cfg, n, steps)


def _memo(fn: Callable[[int], float]) -> Callable[[int], float]:
    cache: dict[int, float] = {}

    def get(n: int) -> float:
        if n not in cache:
            cache[n] = fn(n)
        return cache[n]

    return get

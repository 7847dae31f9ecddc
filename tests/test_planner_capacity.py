"""Capacity model: queueing numbers, service time from the cost model, exact pruning."""

from __future__ import annotations

from dataclasses import replace

import pytest

from common.costmodel import Coeffs, CostModel
from planner.capacity import (
    Estimate,
    build_table,
    cached_table,
    erlang_c,
    estimate,
    queue_estimate,
    steps_per_request,
)
from planner.defaults import example_cost_model, example_quality_profile
from planner.inputs import ConfigKey, PlannerInput, SloClass, nodes_of, validate
from planner.prune import undominated
from tests.planner_helpers import small_input


def test_erlang_c_matches_closed_forms() -> None:
    for rho in (0.1, 0.5, 0.9):
        assert erlang_c(1, rho) == pytest.approx(rho)  # M/M/1: P(wait) = ρ
    assert erlang_c(2, 0.5) == pytest.approx(1 / 3)  # M/M/2 at ρ ½
    assert erlang_c(32, 0.5) < 1e-3 < erlang_c(32, 0.95)


def test_attainment_falls_with_load_and_rises_with_slack() -> None:
    ps = [queue_estimate(1000.0, 3000.0, 4, rho).attainment for rho in (0.3, 0.6, 0.9)]
    assert ps[0] > ps[1] > ps[2] > 0
    slos = [queue_estimate(1000.0, slo, 4, 0.85).attainment for slo in (1200.0, 2000.0, 5000.0)]
    assert slos[0] < slos[1] < slos[2] <= 1.0
    assert queue_estimate(1000.0, 999.0, 4, 0.1).attainment == 0.0  # service alone misses
    est = queue_estimate(1000.0, 3000.0, 4, 0.5)
    assert est.rate_rps == pytest.approx(4.0) and est.latency_ms > est.service_ms


def test_service_time_is_steps_times_the_cost_models_step() -> None:
    flat = CostModel({1: Coeffs(full=[10.0, 0.0, 0.0, 0.0], reuse=[10.0, 0.0, 0.0, 0.0])})
    inp = replace(small_input(), cost_model=flat, service_margin=1.0)
    cls = inp.classes[0]
    steps = steps_per_request(inp, cls, 0.9)
    assert steps == pytest.approx(64 / 2.0)  # 64 tokens at 2 tokens/step
    assert steps_per_request(inp, cls, 0.5) == pytest.approx(8.0)  # 64/8 = 8 ≥ 4 blocks
    est = estimate(inp, cls, ConfigKey(1, 0.9, 1), 0.5)
    # batch of 1: each step is a refresh or a reuse, never both, so the step costs a = 10 ms
    assert est.service_ms == pytest.approx(steps * 10.0)


def test_tensor_parallel_is_faster_per_request_but_slower_per_gpu() -> None:
    inp = PlannerInput(
        (SloClass("c", 5000.0, 1.0),), nodes_of(8), example_cost_model(), example_quality_profile()
    )
    cls = inp.classes[0]
    one = estimate(inp, cls, ConfigKey(1, 0.9, 8), 0.85)
    eight = estimate(inp, cls, ConfigKey(8, 0.9, 8), 0.85)
    assert eight.service_ms < one.service_ms
    assert eight.rate_rps / 8 < one.rate_rps


def test_table_filters_by_slo_and_class_floor() -> None:
    inp = small_input(tau_ladder=(0.9, 0.5))
    inp = replace(inp, classes=(replace(inp.classes[0], tau_floor=0.8), inp.classes[1]))
    table = build_table(inp)
    assert all(k.tau >= 0.8 for c, k, _ in table.cells if c == 0)
    assert all(est.attainment >= inp.min_attainment for est in table.cells.values())
    unpruned = build_table(inp, prune=False)
    assert set(table.configs) <= set(unpruned.configs)
    assert len(table.cells) < len(unpruned.cells)


def test_validate_reports_bad_inputs() -> None:
    assert validate(small_input()) == []
    assert validate(small_input(tp_degrees=(2, 3)))  # groups must nest: 2 does not divide 3
    assert validate(small_input(utilisations=(0.5, 1.0)))
    bad_class = replace(small_input(), classes=(SloClass("x", -1.0, 1.0),))
    assert validate(bad_class)


@pytest.mark.parametrize(("slo_ms", "batch_size", "rho"), [(1200.0, 4, 0.85), (2000.0, 16, 0.7)])
def test_capacity_model_is_conservative_against_the_simulator(
    slo_ms: float, batch_size: int, rho: float
) -> None:
    from planner.validate import compare

    row = compare(slo_ms, batch_size, rho, instances=2, duration_s=60.0, tau=0.9)
    assert row["requests"] > 100
    assert row["predicted_attainment"] <= row["simulated_attainment"] + 0.03
    assert row["predicted_attainment"] > 0.5 and row["simulated_attainment"] > 0.9


def test_pruning_matches_cells_across_levels() -> None:
    """B's cells at ρ 0.85 are beaten by A's at ρ 0.5 (more capacity there, same or better p):
    B goes although no cell of A beats B's at the same level; C has the better accuracy: stays."""
    inp = small_input(utilisations=(0.5, 0.85))
    a, b, c = ConfigKey(1, 0.7, 8), ConfigKey(1, 0.7, 4), ConfigKey(1, 0.9, 4)

    def cells(rate: float, p_low: float, p_high: float) -> dict[tuple[int, float], Estimate]:
        low, high = Estimate(1.0, rate, 0.0, p_low), Estimate(1.0, rate, 0.0, p_high)
        return {(0, 0.5): low, (0, 0.85): high}

    table = {a: cells(4.0, 0.99, 0.9), b: cells(2.0, 0.98, 0.95), c: cells(2.0, 0.98, 0.95)}
    accuracy = {a: 0.76, b: 0.76, c: 0.80}
    assert undominated(inp, table, accuracy) == [a, c]
    assert undominated(replace(inp, current={b: 1}), table, accuracy) == [b, a, c]


def test_pruning_lets_smaller_groups_stand_in_for_a_larger_one() -> None:
    """Two TP-1 instances of A carry what one TP-2 instance of B does (4 ≥ 3.5 req/s on the
    same 2 GPUs, p no worse): B goes, unless the current plan runs a TP-2 group (moving it
    costs the move penalty, so B may be worth keeping). C has more capacity than two A's: stays."""
    inp = small_input(utilisations=(0.5, 0.85))
    a, b, c = ConfigKey(1, 0.7, 8), ConfigKey(2, 0.7, 8), ConfigKey(2, 0.7, 4)
    table = {
        a: {(0, 0.85): Estimate(1.0, 2.0, 0.0, 0.95)},
        b: {(0, 0.85): Estimate(1.0, 3.5, 0.0, 0.95)},
        c: {(0, 0.85): Estimate(1.0, 4.5, 0.0, 0.90)},  # lower p: C does not dominate B
    }
    accuracy = {a: 0.76, b: 0.76, c: 0.76}
    assert undominated(inp, table, accuracy) == [a, c]
    running_tp2 = replace(inp, current={ConfigKey(2, 0.9, 4): 1})
    assert undominated(running_tp2, table, accuracy) == [a, c, b]


def test_the_table_is_reused_across_rates_and_rebuilt_when_what_it_reads_changes() -> None:
    """Re-plans mostly change the rates, which the table does not read: it is reused. A cost
    model that learned, or a TP degree the current plan now runs, gives a new table."""
    inp = small_input(rates=(1.0, 2.0))
    first = cached_table(inp)
    assert first == build_table(inp)
    moved = replace(inp, classes=tuple(replace(c, rate_rps=5.0, weight=3.0) for c in inp.classes))
    assert cached_table(moved) is first

    learned = small_input(rates=(1.0, 2.0))
    learned.cost_model.correction[(1, "full")] = 1.5  # refreshes 50 % slower than profiled
    slower = cached_table(learned)
    assert slower is not first and slower == build_table(learned) and slower != first

    tp2 = next(k for k in first.configs if k.tp == 2)
    running = replace(inp, current={tp2: 1})
    assert cached_table(running) is not first
    assert cached_table(running) == build_table(running)

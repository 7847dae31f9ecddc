"""Forecast and publishing: pure parts of the planner's Redis shell."""

from __future__ import annotations

import pytest

from common.plan import ClusterPlan, GroupPlan, PoolSpec
from planner.assign import Slot, assign
from planner.decision import PlanDecision, PlanStatus, PoolPlan
from planner.forecast import (
    bucket_series,
    drifted,
    estimate_rates,
    forecast_rates,
    holt,
    recent_rates,
)
from planner.publish import current_state, differs, to_cluster_plan


def test_holt_follows_level_and_trend() -> None:
    assert holt([], 1.0) == 0.0
    assert holt([3.0] * 6, 1.0) == pytest.approx(3.0)
    rising = holt([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1.0)
    assert rising > 5.0  # extrapolates the trend
    assert holt([6.0, 4.0, 2.0, 0.0, 0.0, 0.0], 5.0) == 0.0  # never negative


def test_only_complete_buckets_count() -> None:
    counts = {0: {"a": 10}, 10: {"a": 20}, 20: {"a": 999}}  # bucket 20 is still filling
    series = bucket_series(counts, ["a", "b"], now_s=25.0, bucket_s=10, window_s=20)
    assert series == {"a": [1.0, 2.0], "b": [0.0, 0.0]}
    rates = forecast_rates(counts, ["a"], 25.0, 10, 20, horizon_s=0.0)
    assert 1.0 < rates["a"] < 2.5


def test_drift_needs_a_real_move() -> None:
    assert drifted({"a": 10.0, "b": 0.0}, {"a": 11.0, "b": 0.05}, 0.25) == []
    assert drifted({"a": 10.0}, {"a": 14.0}, 0.25) == ["a"]
    assert drifted({"a": 0.0}, {"a": 3.0}, 0.25) == ["a"]
    # over a 10-s count, 10 → 14 req/s is beyond Poisson noise, 1 → 1.5 req/s is not
    assert drifted({"a": 10.0, "b": 1.0}, {"a": 14.0, "b": 1.5}, 0.25, span_s=10) == ["a"]


def test_a_shift_shows_within_seconds_not_at_the_next_bucket() -> None:
    steady = {b: {"tight": 2, "loose": 40} for b in range(0, 60, 10)}  # 0.2 and 4 req/s
    # 3 s into bucket 60 the load flipped: 12 tight and 1 loose request so far
    counts = {**steady, 60: {"tight": 12, "loose": 1}}
    recent = recent_rates(counts, ["tight", "loose"], now_s=63.0, bucket_s=10)
    assert recent == pytest.approx({"tight": (12 + 0.7 * 2) / 10, "loose": (1 + 0.7 * 40) / 10})
    smooth = forecast_rates(counts, ["tight", "loose"], 63.0, 10, 60, horizon_s=5.0)
    est = estimate_rates(counts, ["tight", "loose"], 63.0, 10, 60, horizon_s=5.0, fraction=0.25)
    assert smooth["tight"] == pytest.approx(0.2) and est["tight"] == pytest.approx(1.34)
    assert est["loose"] == pytest.approx(smooth["loose"])  # 29 of 40 expected: still noise
    calm = {**steady, 60: {"tight": 1, "loose": 12}}
    assert estimate_rates(calm, ["tight", "loose"], 63.0, 10, 60, 5.0, 0.25) == pytest.approx(
        forecast_rates(calm, ["tight", "loose"], 63.0, 10, 60, 5.0)
    )


def _decision(tau: float, n: int = 2) -> PlanDecision:
    pool = PoolPlan(f"tp2-tau{tau:.2f}-b8", 2, tau, 0.7, n, 8)
    return PlanDecision(
        PlanStatus.OPTIMAL, "test", pools=(pool,), routing={"c": {pool.pool_id: 1.0}}
    )


SLOTS = [Slot(f"n0/cpu:{i}", "n0", i) for i in range(4)]


def test_published_plan_is_valid_and_a_tau_change_keeps_formations() -> None:
    first = _decision(0.9)
    a1 = assign(SLOTS, [], first.pools)
    plan1 = ClusterPlan.model_validate(to_cluster_plan(first, a1, {}).model_dump())
    assert plan1.pool(plan1.pools[0].pool_id).num_instances == 2
    now = current_state(plan1, default_batch=32)
    assert sum(now.counts.values()) == 2 and sum(now.routing["c"].values()) == 1.0
    second = _decision(0.7)
    a2 = assign(SLOTS, now.groups, second.pools)
    plan2 = to_cluster_plan(second, a2, now.labels)
    assert plan2.pools[0].tau == 0.7 and plan2.pools[0].pool_id == plan1.pools[0].pool_id
    formations = {s: plan1.assignment(s).formation for s in plan1.slot_ids()}  # type: ignore[union-attr]
    assert {s: plan2.assignment(s).formation for s in plan2.slot_ids()} == formations  # type: ignore[union-attr]
    assert differs(plan2, plan1, 0.02)
    assert not differs(plan1, plan1, 0.02)


def test_small_routing_moves_are_not_published() -> None:
    pools = [PoolSpec(pool_id="a", tp=1), PoolSpec(pool_id="b", tp=1)]
    groups = [GroupPlan(group_id="g0", pool_id="a", slots=["n0/cpu:0"]),
              GroupPlan(group_id="g1", pool_id="b", slots=["n0/cpu:1"])]  # fmt: skip
    old = ClusterPlan(pools=pools, groups=groups, routing={"c": {"a": 0.5, "b": 0.5}})
    near = old.model_copy(update={"routing": {"c": {"a": 0.51, "b": 0.49}}})
    far = old.model_copy(update={"routing": {"c": {"a": 0.6, "b": 0.4}}})
    assert not differs(near, old, 0.02)
    assert differs(far, old, 0.02)


def test_idle_gpus_become_headroom_without_breaking_node_rows() -> None:
    from planner.headroom import fill_idle
    from planner.solve import plan
    from tests.planner_helpers import small_input

    inp = small_input(rates=(0.5, 0.5), nodes=(4, 2), tp_degrees=(1, 2))
    d = plan(inp)
    assert d.gpus_used < inp.num_gpus  # light load: the MIP leaves GPUs idle
    full = fill_idle(d, inp)
    assert full.gpus_used == inp.num_gpus
    assert {p.pool_id for p in full.pools} == {p.pool_id for p in d.pools}
    a = assign([Slot(f"n{n}/cpu:{i}", f"n{n}", i) for n, g in enumerate((4, 2)) for i in range(g)],
               [], full.pools)  # fmt: skip
    assert not a.unplaced and not a.idle_slot_ids

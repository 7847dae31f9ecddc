"""The planner closes the loop in the simulator: when traffic shifts from a loose-SLO class to
a tight one, re-planning recovers the attainment a frozen plan loses, and the plan's
predicted attainment is close to what the simulator measures."""

from __future__ import annotations

from planner.decision import PlanDecision, PlanStatus
from planner.defaults import example_cost_model, example_quality_profile
from planner.headroom import fill_idle
from planner.inputs import ConfigKey, PlannerInput, SloClass, nodes_of
from planner.solve import plan
from planner.validate import simulate_plan


def _input(interactive_rps: float, batch_rps: float, current: dict[ConfigKey, int]) -> PlannerInput:
    classes = (
        SloClass("interactive", 700.0, interactive_rps, weight=2.0, tau_floor=0.7),
        SloClass("batch", 20_000.0, batch_rps, weight=1.0, tau_floor=0.8),
    )
    return PlannerInput(
        classes, nodes_of(4), example_cost_model(),
        example_quality_profile(gen_length=64, block_length=16), prompt_tokens=32,
        tp_degrees=(1, 2, 4), batch_sizes=(1, 2, 4, 8, 16), current=current,
    )  # fmt: skip


def _plan(inp: PlannerInput) -> PlanDecision:
    d = plan(inp)
    assert d.status == PlanStatus.OPTIMAL, d.reason
    return fill_idle(d, inp)


def test_replanning_after_a_shift_to_tight_slos_recovers_attainment() -> None:
    loose = _input(0.5, 24.0, {})
    before = _plan(loose)
    assert simulate_plan(before, loose, duration_s=60.0)["all"] > 0.95  # fits its own load

    tight = _input(10.0, 2.0, before.instance_counts())
    after = _plan(tight)
    assert after.moved_gpus + after.retuned_gpus > 0  # capacity moved to the tight class
    frozen = simulate_plan(before, tight, duration_s=60.0)
    replanned = simulate_plan(after, tight, duration_s=60.0)
    assert replanned["all"] > frozen["all"] + 0.2
    assert replanned["interactive"] > 0.9
    for c in ("interactive", "batch"):  # predictions hold within a few points
        assert abs(after.attainment[c] - replanned[c]) < 0.05

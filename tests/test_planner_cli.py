"""`dilaserve whatif` and `dilaserve bench-planner`: run end to end without a cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dilaserve.cli import main
from planner.decision import PlanDecision, PlanStatus


def test_whatif_prints_a_plan_and_its_attainment(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["whatif", "--gpus", "16", "--rate", "10", "--model-dir", "/nonexistent"]
    assert main(argv + ["--mix", "interactive=0.5,standard=0.5"]) == 0
    out = capsys.readouterr().out
    assert "built-in example" in out and "status: optimal" in out
    assert "interactive" in out and "tp" in out


def test_plan_with_a_load_is_the_whatif(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 7's spelling: `dilaserve plan --gpus N --rate R --mix ...` (no subcommand)."""
    argv = ["plan", "--gpus", "8", "--rate", "4", "--mix", "interactive=0.5,batch=0.5"]
    assert main(argv + ["--model-dir", "/nonexistent", "--json"]) == 0
    d = PlanDecision.from_json(capsys.readouterr().out)
    assert d.status == PlanStatus.OPTIMAL and set(d.attainment) == {"interactive", "batch"}
    assert main(["plan"]) == 2  # neither a subcommand nor a load
    assert "give a subcommand" in capsys.readouterr().err


def test_whatif_json_with_a_current_plan(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["whatif", "--gpus", "16", "--rate", "6", "--json", "--model-dir", "/nonexistent"]
    argv += ["--current", "tp4-tau0.90-b32=2,tp8-tau0.70-b16=1", "--slo", "bulk=120000"]
    argv += ["--mix", "interactive=0.3,standard=0.4,bulk=0.3"]
    assert main(argv) == 0
    d = PlanDecision.from_json(capsys.readouterr().out)
    assert d.status == PlanStatus.OPTIMAL
    assert set(d.attainment) == {"interactive", "standard", "bulk"}
    assert d.gpus_used <= 16


def test_bench_planner_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "planner.json"
    assert main(["bench-planner", "--sizes", "8,64", "--repeats", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"8", "64"}
    for row in report["rows"]:
        assert row["status"] == "optimal" and row["gap"] <= 1e-3
        assert row["integer_vars"] > 0 and row["solve_ms"] > 0


def test_bench_planner_times_replans(tmp_path: Path) -> None:
    """`--replan shift`: each timed solve starts from the plan running for the load before."""
    out = tmp_path / "replan.json"
    argv = ["bench-planner", "--sizes", "8", "--repeats", "2", "--replan", "shift"]
    assert main(argv + ["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["options"]["replan"] == "shift"
    for row in report["rows"]:
        assert row["status"] == "optimal" and row["gap"] <= 1e-3
        assert "current" in row["reason"]  # the running plan was priced: a re-plan, not a first
    assert "moved_gpus" in report["summary"]["8"]

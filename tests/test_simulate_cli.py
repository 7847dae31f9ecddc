"""`dilaserve simulate`: policies compared on the simulated cluster, JSON and plot written."""

from __future__ import annotations

import json
from pathlib import Path

from dilaserve.cli import main


def test_simulate_reports_attainment_and_the_cores_cost_per_step(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    argv = ["simulate", "--rates", "30", "--duration", "5", "--policies", "fcfs-fixed,dilaserve"]
    assert main(argv + ["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    runs = {r["policy"]: r["classes"]["all"] for r in report["runs"]}
    assert set(runs) == {"fcfs-fixed", "dilaserve"}
    for s in runs.values():
        assert 0.0 < s["attainment"] <= 1.0
        assert s["core_us_per_step"] > 0.0  # the scheduling core's own time per step, measured
    assert out.with_suffix(".png").exists()

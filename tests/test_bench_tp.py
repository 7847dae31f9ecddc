"""bench-tp runs end to end on CPU (TP 1 and TP 2) and writes a well-formed report."""

from __future__ import annotations

import json
from pathlib import Path

from dilaserve.cli import main


def test_bench_tp_smoke(tmp_path: Path) -> None:
    out = tmp_path / "tp.json"
    argv = [
        "bench-tp", "--synthetic", "tiny", "--tp", "1,2", "--batch-sizes", "2",
        "--prompt-len", "8", "--gen-length", "16", "--block-length", "8", "--repeats", "1",
        "--threads", "1", "--timeout-s", "30", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(out.read_text())
    rows = {r["tp"]: r for r in report["rows"]}
    assert set(rows) == {1, 2}
    for r in rows.values():
        # 2 blocks of 8 at 4 tokens per step: 1 refresh + 1 reuse per block, whatever the degree
        assert (r["num_refresh_steps"], r["num_reuse_steps"]) == (2, 2)
        assert r["refresh_step_ms"] > 0 and r["reuse_step_ms"] > 0
    assert set(report["setup"]) == {"1", "2"} and report["setup"]["2"]["reshard_s"] > 0
    assert "tp2_bs2" in report["summary"]

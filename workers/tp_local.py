"""Run a TP group as d local processes (spawned), for benchmarks and tests.

The parent hosts the rendezvous store on a free port, so no port is guessed, and every child is
killed on the way out whatever happened. Each rank writes a JSON report `rank{r}.json` into
`out_dir`; a rank that died without writing one is reported as {"rank": r, "dead": 1}.
In a deployment, slots are separate worker processes that rendezvous through the plan instead.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp

from workers.tp import host_store

# target(rank, tp_size, store_port, out_dir, *args) → None, importable by module name (spawn)
RankMain = Callable[..., None]


def run_local_group(
    target: RankMain, tp_size: int, args: tuple[Any, ...], out_dir: Path, join_s: float
) -> list[dict[str, Any]]:
    store = host_store("127.0.0.1", tp_size, join_timeout_s=min(join_s, 60.0))
    ctx = mp.get_context("spawn")
    out_dir = Path(out_dir) / uuid.uuid4().hex[:8]
    out_dir.mkdir(parents=True)
    procs = [
        ctx.Process(target=target, args=(r, tp_size, store.port, str(out_dir), *args), daemon=True)
        for r in range(tp_size)
    ]
    try:
        for p in procs:
            p.start()
        _wait(procs, out_dir, join_s)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    return [read_report(out_dir, r) for r in range(tp_size)]


def write_report(out_dir: str | Path, rank: int, report: dict[str, Any]) -> None:
    path = Path(out_dir) / f"rank{rank}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report))
    tmp.rename(path)  # atomic: the parent never reads half a report


def read_report(out_dir: Path, rank: int) -> dict[str, Any]:
    path = out_dir / f"rank{rank}.json"
    return json.loads(path.read_text()) if path.exists() else {"rank": rank, "dead": 1}


def _wait(procs: list[Any], out_dir: Path, join_s: float) -> None:
    """Until every rank exits, or one has exited reporting a lost group (the others are then
    in a broken group: the caller kills them), or `join_s` passes (a hang: raise)."""
    deadline = time.monotonic() + join_s
    while time.monotonic() < deadline:
        exited = [r for r, p in enumerate(procs) if not p.is_alive()]
        if len(exited) == len(procs) or any("lost" in read_report(out_dir, r) for r in exited):
            return
        time.sleep(0.1)
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    raise TimeoutError(f"TP ranks {hung} still running after {join_s}s")

"""`dilaserve bench-engine`: tokens/s, steps and step times of the engine's decoding modes.

Modes (Fast-dLLM's ladder): no cache + 1 token/step (the LLaDA baseline), no cache + τ 0.9,
prefix cache + τ 0.9, dual cache + τ 0.9; at several batch sizes. Writes JSON and prints a table.
With the demo model, prompts come from the held-out demo task and answers are checked.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
from pathlib import Path
from typing import Any

MODES = {
    "none-1tok": ("none", "fixed"),
    "none-t0.9": ("none", 0.9),
    "prefix-t0.9": ("prefix", 0.9),
    "dual-t0.9": ("dual", 0.9),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from common.config import DEFAULT_MODEL_DIR

    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint directory")
    p.add_argument("--batch-sizes", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--modes", default=",".join(MODES), help=f"subset of {','.join(MODES)}")
    p.add_argument("--num-requests", type=int, default=64, help="requests per (mode, batch)")
    p.add_argument("--gen-length", type=int, default=64)
    p.add_argument("--block-length", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("bench_out/engine.json"))


def run(args: argparse.Namespace) -> int:
    import torch

    from workers.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    engine = Engine.from_dir(args.model, max(batch_sizes), device=args.device)
    prompts, check = _workload(engine, args.num_requests, args.gen_length)
    rows = []
    for mode in args.modes.split(","):
        for bs in batch_sizes:
            rows.append(_measure(engine, mode, bs, prompts, check, args))
            _print_row(rows[-1])
    report = {"model": str(args.model), "threads": torch.get_num_threads(), "rows": rows}
    report["summary"] = _summary(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.out}")
    return 0


def _workload(engine: Any, n: int, gen_length: int) -> tuple[list[list[int]], Any]:
    """Held-out demo-task prompts (and a checker) when the model has the demo tokenizer."""
    tok = engine.tokenizer
    if tok is not None:
        from common import task

        problems = task.problems(seed=1234, split="test", n=n)
        prompts = [tok.encode(p.prompt, add_special_tokens=False) for p in problems]

        def check(i: int, ids: list[int]) -> bool:
            return task.check(problems[i], tok.decode(ids, skip_special_tokens=True))

        return prompts, check
    import random

    rng = random.Random(0)
    vocab = engine.cfg.vocab_size
    special = {engine.cfg.mask_token_id, engine.cfg.eos_token_id, engine.cfg.pad_token_id}
    ids = [t for t in range(vocab) if t not in special]
    return [rng.choices(ids, k=rng.randint(8, 24)) for _ in range(n)], None


def _measure(
    engine: Any, mode: str, bs: int, prompts: list[list[int]], check: Any, args: Any
) -> dict[str, Any]:
    from workers.sched.plan import CacheMode, FixedCountRule, ThresholdRule

    cache, tau = MODES[mode]
    rule = FixedCountRule(args.block_length) if tau == "fixed" else ThresholdRule(float(tau))
    engine.generate(prompts[:bs], args.gen_length, args.block_length, rule, CacheMode(cache))
    wall = full = reuse = 0.0
    steps, per_step, correct, tokens = [], [], 0, 0
    full_steps = reuse_steps = 0
    for start in range(0, len(prompts), bs):
        chunk = prompts[start : start + bs]
        outs = engine.generate(chunk, args.gen_length, args.block_length, rule, CacheMode(cache))
        st = engine.last_stats
        wall, full, reuse = wall + st.wall_s, full + st.full_s, reuse + st.reuse_s
        full_steps += st.num_full_steps
        reuse_steps += st.num_reuse_steps
        for i, o in enumerate(outs):
            steps.append(o.steps)
            per_step.extend(o.tokens_per_step)
            tokens += sum(o.tokens_per_step)
            correct += bool(check and check(start + i, o.answer_ids))
    return {
        "mode": mode, "batch_size": bs, "num_requests": len(prompts),
        "tokens_per_s": tokens / wall, "steps_per_request": statistics.mean(steps),
        "tokens_per_step": statistics.mean(per_step),
        "full_step_ms": 1e3 * full / max(full_steps, 1),
        "reuse_step_ms": 1e3 * reuse / max(reuse_steps, 1) if reuse_steps else None,
        "accuracy": correct / len(prompts) if check else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": wall,
    }  # fmt: skip


def _print_row(r: dict[str, Any]) -> None:
    acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}%"
    reuse = "-" if r["reuse_step_ms"] is None else f"{r['reuse_step_ms']:.2f}"
    print(
        f"{r['mode']:<12} bs={r['batch_size']:<3} {r['tokens_per_s']:>9.1f} tok/s "
        f"steps/req={r['steps_per_request']:6.1f} tok/step={r['tokens_per_step']:5.2f} "
        f"full={r['full_step_ms']:.2f}ms reuse={reuse}ms acc={acc}",
        flush=True,
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {(r["mode"], r["batch_size"]): r for r in rows}
    out: dict[str, Any] = {}
    base, dual1, dual32 = (
        by.get(("none-1tok", 1)),
        by.get(("dual-t0.9", 1)),
        by.get(("dual-t0.9", 32)),
    )
    if base and dual1:
        out["dual_t0.9_vs_baseline_speedup_bs1"] = dual1["tokens_per_s"] / base["tokens_per_s"]
        if base["accuracy"] is not None:
            out["dual_t0.9_minus_baseline_accuracy_points"] = 100 * (
                dual1["accuracy"] - base["accuracy"]
            )
    if dual1 and dual32:
        out["dual_t0.9_bs32_vs_bs1_speedup"] = dual32["tokens_per_s"] / dual1["tokens_per_s"]
    return out

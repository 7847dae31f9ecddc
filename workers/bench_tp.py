"""`dilaserve bench-tp`: per-step latency (refresh, reuse) and throughput at TP 1 vs TP d.

Each TP degree runs as d spawned local ranks (gloo on CPU, NCCL on `--device cuda`), driving the
real engine through the leader runner with the dual cache and a fixed-count rule, so every degree
takes exactly the same steps and only the time per step differs. Also measured per degree: the
group join, and the reshard from the host copy of the full weights (what a regroup costs besides
handing requests back). Writes JSON and prints a table. `--synthetic` builds a random model of a
named shape instead of reading a checkpoint (the numbers do not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

# name → (vocab, hidden, layers, heads, kv_heads, intermediate): shapes divisible up to TP 8
SYNTHETIC = {
    "tiny": (512, 256, 4, 8, 8, 704),
    "small": (32000, 1024, 8, 16, 16, 2816),
    "llada-8b-4l": (126464, 4096, 4, 32, 32, 12288),  # LLaDA-8B widths, 4 of its 32 layers
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from common.config import DEFAULT_MODEL_DIR

    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint directory")
    p.add_argument("--synthetic", choices=sorted(SYNTHETIC), help="random model of this shape")
    p.add_argument("--tp", default="1,2", help="comma-separated TP degrees")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes")
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--gen-length", type=int, default=64)
    p.add_argument("--block-length", type=int, default=16)
    p.add_argument("--tokens-per-step", type=int, default=4, help="fixed commits per step")
    p.add_argument("--repeats", type=int, default=3, help="measured generations per batch size")
    p.add_argument("--device", default="cpu", help="cpu or cuda (rank r uses cuda:r)")
    p.add_argument("--backend", default="", help="override: gloo or nccl (default by device)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--threads", type=int, default=0, help="torch threads per rank (0: cores/tp)")
    p.add_argument("--timeout-s", type=float, default=120.0, help="collective timeout")
    p.add_argument("--out", type=Path, default=Path("bench_out/tp.json"))


def run(args: argparse.Namespace) -> int:
    from workers.tp_local import run_local_group

    degrees = [int(d) for d in args.tp.split(",")]
    rows: list[dict[str, Any]] = []
    setup: dict[str, Any] = {}
    for tp in degrees:
        _check_devices(args, tp)
        with tempfile.TemporaryDirectory() as tmp:
            reports = run_local_group(_rank_main, tp, (vars(args),), Path(tmp), join_s=1800.0)
        lead = reports[0]
        if "rows" not in lead:
            raise SystemExit(f"TP {tp} failed: {reports}")
        rows.extend(lead["rows"])
        setup[str(tp)] = lead["setup"]
        for r in lead["rows"]:
            _print_row(r)
    report = {
        "model": args.synthetic or str(args.model), "device": args.device,
        "dtype": args.dtype, "backend": args.backend or "auto",
        "prompt_len": args.prompt_len, "gen_length": args.gen_length,
        "block_length": args.block_length, "tokens_per_step": args.tokens_per_step,
        "setup": setup, "rows": rows, "summary": _summary(rows),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"setup": setup, "summary": report["summary"]}, indent=2))
    print(f"wrote {args.out}")
    return 0


def _check_devices(args: argparse.Namespace, tp: int) -> None:
    if not args.device.startswith("cuda") or args.backend == "gloo":
        return
    import torch

    found = torch.cuda.device_count()
    if tp > found:
        raise SystemExit(
            f"TP {tp} with NCCL needs {tp} GPUs, found {found} "
            "(--backend gloo runs several ranks on one GPU, as a smoke test only)"
        )


# ---- one rank ----


def _rank_main(rank: int, tp: int, port: int, out_dir: str, opts: dict[str, Any]) -> None:
    import torch

    from workers.model.tp import GroupLost
    from workers.tp import GroupSpec, TPGroup
    from workers.tp_local import write_report

    threads = opts["threads"] or max(1, (os.cpu_count() or 1) // tp)
    torch.set_num_threads(threads)
    device = _rank_device(opts["device"], rank)
    t0 = time.perf_counter()
    spec = GroupSpec(
        "bench", rank, tp, "127.0.0.1", port, device=device, timeout_s=opts["timeout_s"],
        backend_name=opts["backend"],
    )  # fmt: skip
    group = TPGroup(spec)
    setup = {"join_s": time.perf_counter() - t0, "threads_per_rank": threads}
    report: dict[str, Any] = {"rank": rank}
    try:
        report.update(_serve(rank, tp, device, opts, setup, group.group))
    except GroupLost as e:
        report["lost"] = str(e)
    write_report(out_dir, rank, report)
    group.close()


def _rank_device(device: str, rank: int) -> str:
    if not device.startswith("cuda"):
        return device
    import torch

    return f"cuda:{rank % max(1, torch.cuda.device_count())}"


def _serve(  # type: ignore[no-untyped-def]
    rank: int, tp: int, device: str, opts: dict[str, Any], setup: dict[str, Any], group: Any
):
    import torch

    from workers.engine import DTYPES, Engine
    from workers.model.tp import build_sharded_model
    from workers.runner import ModelRunner
    from workers.tp_runner import LeaderRunner, follow

    t0 = time.perf_counter()
    cfg, state = _full_state(opts)
    setup["load_full_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model, hook = build_sharded_model(cfg, state, rank, tp, group, DTYPES[opts["dtype"]], device)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    setup["reshard_s"] = time.perf_counter() - t0  # a regroup pays this, not load_full_s
    max_bs = max(int(b) for b in opts["batch_sizes"].split(","))
    if rank != 0:
        return {"num_steps": follow(ModelRunner(model, max_bs), hook, group)}
    engine = Engine(model, None, max_bs)
    leader = LeaderRunner(engine.runner, hook, opts["timeout_s"] / 4, group)
    engine.runner = leader  # type: ignore[assignment]
    rows = [_measure(engine, tp, int(b), opts) for b in opts["batch_sizes"].split(",")]
    leader.close()
    return {"rows": rows, "setup": setup}


def _full_state(opts: dict[str, Any]):  # type: ignore[no-untyped-def]
    """(config, full state dict in host memory): a checkpoint, or random weights of a shape."""
    import torch

    from workers.model.config import ModelConfig
    from workers.model.loader import read_config, read_state_dict
    from workers.model.transformer import DiffusionLM

    if not opts["synthetic"]:
        return read_config(opts["model"]), read_state_dict(opts["model"])
    vocab, hidden, layers, heads, kv, inter = SYNTHETIC[opts["synthetic"]]
    cfg = ModelConfig(
        vocab_size=vocab, hidden_size=hidden, num_layers=layers, num_heads=heads,
        num_kv_heads=kv, intermediate_size=inter, mask_token_id=vocab - 1, eos_token_id=vocab - 2,
        pad_token_id=vocab - 3, max_seq_len=opts["prompt_len"] + opts["gen_length"],
    )  # fmt: skip
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in DiffusionLM(cfg).state_dict().items()}
    gen = torch.Generator().manual_seed(0)  # every rank draws the same full weights
    state = {
        k: torch.randn(s, generator=gen) / s[-1] ** 0.5 if len(s) == 2 else torch.ones(s)
        for k, s in shapes.items()
    }
    return cfg, state


def _measure(engine: Any, tp: int, bs: int, opts: dict[str, Any]) -> dict[str, Any]:
    from workers.sched.plan import CacheMode, FixedCountRule

    cfg = engine.cfg
    rng = random.Random(bs)
    special = {cfg.mask_token_id, cfg.eos_token_id, cfg.pad_token_id}
    ids = [t for t in range(min(cfg.vocab_size, 4096)) if t not in special]
    prompts = [rng.choices(ids, k=opts["prompt_len"]) for _ in range(bs)]
    rule = FixedCountRule(opts["block_length"] // opts["tokens_per_step"])
    gen = (opts["gen_length"], opts["block_length"], rule, CacheMode.DUAL)
    engine.generate(prompts, *gen)  # warm-up: allocator, kernels, first collectives
    wall = full = reuse = 0.0
    full_steps = reuse_steps = tokens = 0
    for _ in range(opts["repeats"]):
        outs = engine.generate(prompts, *gen)
        st = engine.last_stats
        wall, full, reuse = wall + st.wall_s, full + st.full_s, reuse + st.reuse_s
        full_steps += st.num_full_steps
        reuse_steps += st.num_reuse_steps
        tokens += sum(sum(o.tokens_per_step) for o in outs)
    return {
        "tp": tp, "batch_size": bs, "refresh_step_ms": 1e3 * full / max(full_steps, 1),
        "reuse_step_ms": 1e3 * reuse / max(reuse_steps, 1),
        "num_refresh_steps": full_steps, "num_reuse_steps": reuse_steps,
        "tokens_per_s": tokens / wall, "tokens_per_s_per_device": tokens / wall / tp,
        "wall_s": wall,
    }  # fmt: skip


# ---- output ----


def _print_row(r: dict[str, Any]) -> None:
    print(
        f"tp={r['tp']} bs={r['batch_size']:<3} refresh={r['refresh_step_ms']:8.2f}ms "
        f"reuse={r['reuse_step_ms']:8.2f}ms {r['tokens_per_s']:9.1f} tok/s "
        f"({r['tokens_per_s_per_device']:.1f} per device)",
        flush=True,
    )


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per batch size and degree d > 1: latency and throughput relative to TP 1."""
    base = {r["batch_size"]: r for r in rows if r["tp"] == 1}
    out: dict[str, Any] = {}
    for r in rows:
        b = base.get(r["batch_size"])
        if r["tp"] == 1 or b is None:
            continue
        out[f"tp{r['tp']}_bs{r['batch_size']}"] = {
            "refresh_speedup": b["refresh_step_ms"] / r["refresh_step_ms"],
            "reuse_speedup": b["reuse_step_ms"] / r["reuse_step_ms"],
            "throughput_per_device_ratio": r["tokens_per_s_per_device"]
            / b["tokens_per_s_per_device"],
        }
    return out

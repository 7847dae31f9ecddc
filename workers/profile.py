"""`dilaserve profile`: measure a model's step times on this machine and fit the cost model.

Runs refresh (full) and reuse (dual and prefix) sub-batches over a grid of batch sizes and
canvas lengths through the real runner, fits each sub-batch kind by least squares
(common/costmodel.py), reports the fit error on held-out samples, and writes the coefficients
to JSON (next to the model by default) and, with --redis-url, to the model's profile hash.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path
from typing import Any

from common.costmodel import Coeffs, CostModel, StepShape, SubBatch, fit, shape_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    from common.config import DEFAULT_MODEL_DIR

    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint directory")
    p.add_argument("--batch-sizes", default="1,2,4,8,16,32")
    p.add_argument("--canvas-lengths", default="48,80,112", help="prompt + answer tokens")
    p.add_argument("--block-length", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3, help="measurements per grid point")
    p.add_argument("--tp", type=int, default=1, help="the TP degree these numbers are for")
    p.add_argument("--threads", type=int, default=1, help="torch threads, as a worker runs")
    p.add_argument("--out", type=Path, default=None, help="default: <model>/costmodel.json")
    p.add_argument("--redis-url", default=None, help="also publish to this Redis")
    p.add_argument("--prefix", default="dila", help="Redis key prefix")


def run(args: argparse.Namespace) -> int:
    import torch

    from workers.engine import Engine

    torch.set_num_threads(args.threads)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    lengths = [int(n) for n in args.canvas_lengths.split(",")]
    engine = Engine.from_dir(args.model, max(sizes))
    full, reuse = _measure(engine, sizes, lengths, args.block_length, args.repeats)
    rng = random.Random(0)  # held-out check: fit on a random half of the grid, test on the rest
    rng.shuffle(full)
    rng.shuffle(reuse)
    coeffs = Coeffs(full=fit(full[::2]), reuse=fit(reuse[::2]))
    heldout = {
        "full": _mape(coeffs, full[1::2], "full"),
        "reuse": _mape(coeffs, reuse[1::2], "reuse"),
    }
    report = {
        "tp": args.tp, "threads": args.threads,
        "coeffs": {"full": coeffs.full, "reuse": coeffs.reuse},
        "heldout_median_abs_pct_error": heldout,
        "num_samples": {"full": len(full), "reuse": len(reuse)},
    }  # fmt: skip
    model = _merge(args, CostModel({args.tp: Coeffs(full=fit(full), reuse=fit(reuse))}))
    out = args.out or args.model / "costmodel.json"
    out.write_text(model.to_json())
    if args.redis_url:
        _publish(args, model)
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


def _measure(
    engine: Any, sizes: list[int], lengths: list[int], block: int, repeats: int
) -> tuple[list[tuple[SubBatch, float]], list[tuple[SubBatch, float]]]:
    """Per grid point, the median of `repeats` timings (robust to a busy machine), after a
    warm-up pass that is thrown away."""
    from workers.sched.plan import CacheMode

    full: list[tuple[SubBatch, float]] = []
    reuse: list[tuple[SubBatch, float]] = []
    _time_point(engine, sizes[-1], lengths[-1], block, CacheMode.DUAL)  # warm-up
    for bs in sizes:
        for L in lengths:
            for mode in (CacheMode.DUAL, CacheMode.PREFIX):
                runs = [_time_point(engine, bs, L, block, mode) for _ in range(repeats)]
                full.append((runs[0][0], statistics.median(r[1] for r in runs)))
                reuse.append((runs[0][2], statistics.median(r[3] for r in runs)))
    return full, reuse


def _time_point(engine: Any, bs: int, L: int, block: int, mode: Any) -> tuple[Any, ...]:
    """One refresh and one reuse step of `bs` fresh requests with canvas length L."""
    from workers.sched.plan import NewSeq, Phase, SeqStep, StepPlan, ThresholdRule

    cfg, runner = engine.cfg, engine.runner
    prompt = L - 4 * block if L > 4 * block else L - block
    ids = [f"profile-{i}" for i in range(bs)]
    rng = random.Random(L * 1000 + bs)
    news = [
        NewSeq(i, [rng.randrange(4, cfg.vocab_size - 1) for _ in range(prompt)]
               + [cfg.mask_token_id] * (L - prompt), prompt, block, mode)
        for i in ids
    ]  # fmt: skip
    rule = ThresholdRule(1.0)  # one token per step: the block never finishes mid-measurement
    r1 = runner.execute(StepPlan(new=news, steps=[SeqStep(i, 0, Phase.REFRESH, rule) for i in ids]))
    r2 = runner.execute(StepPlan(steps=[SeqStep(i, 0, Phase.REUSE, rule) for i in ids]))
    runner.execute(StepPlan(release=ids))
    return shape_of(r1).full, 1e3 * r1.full_s, shape_of(r2).reuse, 1e3 * r2.reuse_s


def _mape(coeffs: Coeffs, samples: list[tuple[SubBatch, float]], kind: str) -> float:
    errs = []
    for sb, ms in samples:
        shape = StepShape(full=sb) if kind == "full" else StepShape(reuse=sb)
        pred = sum(coeffs.predict(shape))
        errs.append(abs(pred - ms) / ms)
    return 100 * statistics.median(errs)


def _merge(args: argparse.Namespace, model: CostModel) -> CostModel:
    """Keep other TP degrees' coefficients already in the output file."""
    out = args.out or args.model / "costmodel.json"
    if out.exists():
        old = CostModel.load(out)
        old.coeffs.update(model.coeffs)
        return old
    return model


def _publish(args: argparse.Namespace, model: CostModel) -> None:
    import redis

    from common.keys import Keys

    client = redis.Redis.from_url(args.redis_url)
    client.hset(Keys(args.prefix).profile(args.model.name), "costmodel", model.to_json())
    client.close()

"""`dilaserve eval`: the speed–quality curve of a model on held-out demo problems.

For each threshold τ and cache mode, decode N held-out problems with the real engine and record
exact-match accuracy, steps per answer and the distribution of tokens the rule committed per step
(the EOS fill after an EOS commit is not counted). Writes the quality profile that the scheduler,
planner and simulator read (common/quality.py), a plot, and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common.config import DEFAULT_MODEL_DIR

TAUS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.3)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="checkpoint directory")
    p.add_argument("--num-problems", type=int, default=500, help="held-out problems per point")
    p.add_argument("--seed", type=int, default=0, help="held-out problem seed")
    p.add_argument("--taus", default=",".join(map(str, TAUS)))
    p.add_argument("--cache-modes", default="none,dual")
    p.add_argument("--gen-length", type=int, default=64)
    p.add_argument("--block-length", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="profile path (default: in the model)")


def run(args: argparse.Namespace) -> int:
    import torch

    from common import task
    from common.quality import QualityProfile
    from workers.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = Engine.from_dir(args.model, args.batch_size, device=args.device)
    problems = task.problems(args.seed, "test", args.num_problems)
    points: dict[str, list[Any]] = {}
    for mode in args.cache_modes.split(","):
        points[mode] = []
        for tau in (float(t) for t in args.taus.split(",")):
            points[mode].append(measure(engine, problems, mode, tau, args))
            print(json.dumps({"cache_mode": mode, **_asdict(points[mode][-1])}), flush=True)
    profile = QualityProfile(
        model=args.model.name, gen_length=args.gen_length, block_length=args.block_length,
        num_problems=len(problems), points=points,
    )  # fmt: skip
    out = args.out or args.model / "quality_profile.json"
    out.write_text(profile.to_json())
    plot(profile, out.with_suffix(".png"))
    print(table(profile))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def measure(engine: Any, problems: list[Any], mode: str, tau: float, args: Any) -> Any:
    from common import task
    from common.quality import QualityPoint
    from workers.sched.plan import CacheMode, ThresholdRule

    tok = engine.tokenizer
    prompts = [tok.encode(p.prompt, add_special_tokens=False) for p in problems]
    t0 = time.perf_counter()
    outs = engine.generate(
        prompts, args.gen_length, args.block_length, ThresholdRule(tau), CacheMode(mode)
    )
    wall_s = time.perf_counter() - t0
    correct = sum(
        task.check(p, tok.decode(o.answer_ids, skip_special_tokens=True)) and not o.failed
        for p, o in zip(problems, outs, strict=True)
    )
    per_step = [k for o in outs for k in o.tokens_per_step]
    hist = [0] * args.block_length
    for k in per_step:
        hist[min(k, args.block_length) - 1] += 1
    print(f"  τ {tau} {mode}: {wall_s:.1f} s", flush=True)
    return QualityPoint(
        tau=tau,
        accuracy=correct / len(problems),
        tokens_per_step=sum(per_step) / len(per_step),
        steps_per_answer=sum(o.steps for o in outs) / len(outs),
        tokens_per_step_dist=[h / len(per_step) for h in hist],
    )


def _asdict(point: Any) -> dict[str, Any]:
    keys = ("tau", "accuracy", "tokens_per_step", "steps_per_answer")
    return {k: getattr(point, k) for k in keys}


def table(profile: Any) -> str:
    modes = list(profile.points)
    head = "| τ | " + " | ".join(f"{m}: exact match / steps / tokens per step" for m in modes)
    lines = [head + " |", "|---" * (len(modes) + 1) + "|"]
    for i, p0 in enumerate(profile.points[modes[0]]):
        cells = [
            f"{p.accuracy:.3f} / {p.steps_per_answer:.1f} / {p.tokens_per_step:.2f}"
            for p in (profile.points[m][i] for m in modes)
        ]
        lines.append(f"| {p0.tau:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(profile: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, acc_ax = plt.subplots(figsize=(6, 4))
    tps_ax = acc_ax.twinx()
    for mode, pts in profile.points.items():
        taus = [p.tau for p in pts]
        acc_ax.plot(taus, [p.accuracy for p in pts], "o-", label=f"exact match ({mode})")
        tps_ax.plot(taus, [p.tokens_per_step for p in pts], "s--", label=f"tokens/step ({mode})")
    acc_ax.set_xlabel("threshold τ")
    acc_ax.set_ylabel("exact match")
    tps_ax.set_ylabel("tokens per step")
    acc_ax.invert_xaxis()  # left to right: slower and safer → faster and riskier
    acc_ax.set_title(f"{profile.model}: {profile.num_problems} held-out problems")
    fig.legend(loc="lower left", bbox_to_anchor=(0.14, 0.42), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

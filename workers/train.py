"""`dilaserve train`: train the demo diffusion LM from scratch on the any-order task.

LLaDA objective: mask each answer token with probability t ~ U(0, 1), cross-entropy on the
masked positions weighted by 1/t. AdamW with warmup + cosine decay, fixed seed, resumable from a
checkpoint file (the data stream is a pure function of (seed, step), so a resumed run replays
the same batches). Runs on a GPU when one is there.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from common.config import DEFAULT_MODEL_DIR, REPO_ROOT


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="model directory to write")
    p.add_argument("--steps", type=int, default=4500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument(
        "--block-rows",
        type=float,
        default=0.5,
        help="share of rows masked like semi-AR block decoding (see train_data.mask_answers)",
    )
    p.add_argument("--seed", type=int, default=0, help="data and init seed")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (cores are shared)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=REPO_ROOT / "runs" / "train-demo" / "state.pt",
        help="resume from / save to this file",
    )
    p.add_argument("--save-every", type=int, default=250, help="checkpoint period in steps")
    p.add_argument("--probe-every", type=int, default=0, help="τ probe period in steps (0: off)")
    p.add_argument("--probe-n", type=int, default=100, help="held-out problems per τ probe")


def build_model(args: argparse.Namespace):  # -> DiffusionLM (torch imported lazily)
    from common.task import GEN_LENGTH
    from workers.model.config import ModelConfig
    from workers.model.transformer import DiffusionLM
    from workers.tokenizer import EOS, MASK, PAD, vocab

    ids = vocab()
    cfg = ModelConfig(
        vocab_size=len(ids),
        hidden_size=args.hidden,
        num_layers=args.layers,
        num_heads=args.heads,
        num_kv_heads=args.kv_heads,
        intermediate_size=int(args.hidden * 2.75) // 16 * 16,
        mask_token_id=ids[MASK],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        max_seq_len=128,
        rope_theta=10000.0,
        family="dilaserve",
    )
    assert cfg.max_seq_len >= 64 + GEN_LENGTH
    return DiffusionLM(cfg)


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    frac = (step - args.warmup_steps) / max(1, args.steps - args.warmup_steps)
    return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def run(args: argparse.Namespace) -> int:
    from workers.train_loop import train

    t0 = time.monotonic()
    model = train(args)
    from workers.model.loader import save_model
    from workers.tokenizer import save_tokenizer

    save_model(model, args.out)
    save_tokenizer(args.out, model.cfg.max_seq_len)
    info = {"steps": args.steps, "wall_s": round(time.monotonic() - t0, 1), "out": str(args.out)}
    print(json.dumps(info))
    return 0

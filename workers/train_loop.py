"""The training loop behind `dilaserve train` (see workers/train.py for the objective)."""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.task import GEN_LENGTH
from workers.model.transformer import DiffusionLM
from workers.train_data import mask_answers, train_batch


def masked_diffusion_loss(
    model: DiffusionLM, batch, gen: torch.Generator, device, block_rows: float
) -> torch.Tensor:
    ids, valid, pos = batch
    noised, weight, _ = mask_answers(ids, pos, model.cfg.mask_token_id, gen, block_rows)
    rows = torch.arange(ids.shape[0])[:, None]
    logits = model(noised.to(device), valid.to(device))[rows.to(device), pos.to(device)]
    target = ids[rows, pos].to(device)  # [B, G]
    ce = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    return (ce * weight.flatten().to(device)).sum() / (ids.shape[0] * GEN_LENGTH)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _resume(path, model, opt) -> int:
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    print(f"resumed from {path} at step {state['step']}")
    return int(state["step"])


def _save(path, model, opt, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)
    tmp.replace(path)  # atomic: a kill mid-save never leaves a broken checkpoint


def _probe(model: DiffusionLM, args: argparse.Namespace, step: int) -> None:
    from workers.train_probe import tau_curve

    model.eval()
    rows = tau_curve(model, args.probe_n, [1.0, 0.9, 0.7, 0.5])
    model.train()
    tqdm.write(json.dumps({"step": step, "probe": rows}))


def train(args: argparse.Namespace) -> DiffusionLM:
    from workers.train import build_model, lr_at

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = _device(args.device)
    model = build_model(args).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    start = _resume(args.checkpoint, model, opt)
    model.train()
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, desc="train")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        batch = train_batch(args.seed, step, args.batch_size)
        loss = masked_diffusion_loss(model, batch, gen, device, args.block_rows)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr_at(step, args):.1e}")
        done = step + 1
        if done % args.save_every == 0 or done == args.steps:
            _save(args.checkpoint, model, opt, done)
        if args.probe_every and done % args.probe_every == 0:
            _probe(model, args, done)
    return model.eval()

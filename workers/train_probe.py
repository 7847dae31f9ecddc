"""A throwaway τ check for training: threshold decoding with a full forward every step.

Not the serving engine (workers/engine.py is): it exists only to watch the accuracy and
tokens-per-step curve while choosing the task and the training length.
"""

from __future__ import annotations

import torch
from torch import Tensor

from common.task import GEN_LENGTH, check, problems
from workers.model.transformer import DiffusionLM
from workers.train_data import EOS_ID, PAD_ID, VOCAB, collate, encode

CHARS = {i: c for c, i in VOCAB.items() if len(c) == 1}
BLOCK_LENGTH = 16


def _pick(conf: Tensor, open_: Tensor, tau: float) -> Tensor:
    """Positions to commit [B, G]: conf ≥ τ among open ones, else the single most confident."""
    conf = conf.masked_fill(~open_, -1.0)
    top = torch.zeros_like(open_)
    top.scatter_(1, conf.argmax(1, keepdim=True), True)
    top &= open_.any(1, keepdim=True)
    if tau >= 1.0:  # τ 1.0 means one token per step (softmax can reach exactly 1.0 in fp32)
        return top
    above = open_ & (conf >= tau)
    return torch.where(above.any(1, keepdim=True), above, top)


def _fill_after_eos(ids: Tensor, pos: Tensor, eos_commit: Tensor, mask_id: int) -> None:
    """Like the engine: an EOS commit means the rest of the answer is EOS (later blocks skipped)."""
    ar = torch.arange(GEN_LENGTH)[None, :]
    first = torch.where(eos_commit, ar, GEN_LENGTH).min(1, keepdim=True).values  # [B, 1]
    rows = torch.arange(ids.shape[0])[:, None].expand_as(pos)
    fill = (ar > first) & (ids[rows, pos] == mask_id)
    ids[rows[fill], pos[fill]] = EOS_ID


@torch.no_grad()
def decode(model: DiffusionLM, ids: Tensor, valid: Tensor, pos: Tensor, tau: float) -> Tensor:
    """Fill the masked answer positions block by block; returns steps per row [B]."""
    mask_id = model.cfg.mask_token_id
    rows = torch.arange(ids.shape[0])[:, None]
    steps = torch.zeros(ids.shape[0], dtype=torch.long)
    for b0 in range(0, GEN_LENGTH, BLOCK_LENGTH):
        in_block = torch.zeros(GEN_LENGTH, dtype=torch.bool)
        in_block[b0 : b0 + BLOCK_LENGTH] = True
        while True:
            open_ = (ids[rows, pos] == mask_id) & in_block
            if not open_.any():
                break
            logits = model(ids, valid)[rows, pos]  # [B, G, V]
            logits[..., mask_id] = float("-inf")
            conf, pred = logits.softmax(-1).max(-1)
            chosen = _pick(conf, open_, tau)
            ids[rows.expand_as(pos)[chosen], pos[chosen]] = pred[chosen]
            steps += open_.any(1)
            _fill_after_eos(ids, pos, chosen & (pred == EOS_ID), mask_id)
    return steps


def answer_text(ids: list[int]) -> str:
    return "".join(CHARS.get(i, "") for i in ids if i not in (EOS_ID, PAD_ID))


def tau_curve(model: DiffusionLM, n: int, taus: list[float], seed: int = 0) -> list[dict]:
    probs = problems(seed, "test", n)
    mask = [model.cfg.mask_token_id] * GEN_LENGTH
    rows = []
    for tau in taus:
        ids, valid, pos = collate([encode(p.prompt) for p in probs], [mask] * n)
        steps = decode(model, ids, valid, pos, tau)
        answers = ids[torch.arange(n)[:, None], pos].tolist()
        correct = sum(check(p, answer_text(a)) for p, a in zip(probs, answers, strict=True))
        rows.append(
            {
                "tau": tau,
                "accuracy": correct / n,
                "steps": steps.float().mean().item(),
                "tokens_per_step": GEN_LENGTH * n / steps.sum().item(),
            }
        )
    return rows

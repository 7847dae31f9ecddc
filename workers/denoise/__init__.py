"""Unmasking rules: which masked positions of the current block a step commits.

Each rule is a vectorised function over a sub-batch: `conf` [B, Q] holds the confidence of every
candidate (−inf where not masked or outside the block); the rule returns a bool commit mask
[B, Q] with at least one True in every row that has a masked position. `commit_mask` dispatches
rows to rules by the type of their typed params (workers/sched/plan.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from workers.denoise.factor import select_factor
from workers.denoise.fixed import select_fixed
from workers.denoise.threshold import select_threshold
from workers.sched.plan import DecodeRule, FactorRule, FixedCountRule, SeqStep, ThresholdRule


def commit_mask(conf: Tensor, steps: list[SeqStep], block_lengths: list[int]) -> Tensor:
    """conf [B, Q] (−inf = not a candidate) → commit mask [B, Q] bool."""
    rules: list[DecodeRule] = [s.rule for s in steps]
    if all(isinstance(r, ThresholdRule) for r in rules):  # the common case: no row gathering
        return select_threshold(conf, _values(rules, "tau", conf))
    out = torch.zeros_like(conf, dtype=torch.bool)
    for kind in (ThresholdRule, FixedCountRule, FactorRule):
        rows = [i for i, r in enumerate(rules) if isinstance(r, kind)]
        if not rows:
            continue
        idx = torch.tensor(rows, device=conf.device)
        sub = conf[idx]
        picked = [rules[i] for i in rows]
        if kind is ThresholdRule:
            out[idx] = select_threshold(sub, _values(picked, "tau", conf))
        elif kind is FactorRule:
            out[idx] = select_factor(sub, _values(picked, "factor", conf))
        else:
            counts = [
                _fixed_count(block_lengths[i], picked[j].steps_per_block, steps[i].step_in_block)  # type: ignore[union-attr]
                for j, i in enumerate(rows)
            ]
            out[idx] = select_fixed(sub, torch.tensor(counts, device=conf.device))
    return out


def _values(rules: list[DecodeRule], name: str, like: Tensor) -> Tensor:
    return torch.tensor([getattr(r, name) for r in rules], dtype=torch.float32, device=like.device)


def _fixed_count(block_length: int, steps_per_block: int, step_in_block: int) -> int:
    # LLaDA get_num_transfer_tokens: an even split, the first (m mod S) steps take one extra.
    base, extra = divmod(block_length, steps_per_block)
    return max(1, base + (1 if step_in_block < extra else 0))

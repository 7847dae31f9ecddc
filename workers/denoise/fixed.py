"""LLaDA low-confidence remasking: commit the k most confident masked positions."""

from __future__ import annotations

import torch
from torch import Tensor


def select_fixed(conf: Tensor, k: Tensor) -> Tensor:
    """conf [B, Q] (−inf = not a candidate), k [B] → commit mask of the top-k candidates."""
    order = conf.argsort(dim=1, descending=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(conf.shape[1], device=conf.device).expand_as(order))
    return (conf > float("-inf")) & (rank < k[:, None])

"""Fast-dLLM confidence threshold: commit conf ≥ τ, and always the most confident position."""

from __future__ import annotations

import torch
from torch import Tensor


def select_threshold(conf: Tensor, tau: Tensor) -> Tensor:
    """conf [B, Q] (−inf = not a candidate), tau [B] → commit mask [B, Q]."""
    candidate = conf > float("-inf")
    top = torch.zeros_like(candidate)
    top.scatter_(1, conf.argmax(dim=1, keepdim=True), True)
    # τ = 1.0 means top-1 only: an fp32 softmax can reach exactly 1.0 at easy positions, and
    # "≥ 1.0" would then commit several tokens per step.
    tau_eff = torch.where(tau >= 1.0, torch.full_like(tau, float("inf")), tau)
    return candidate & (top | (conf >= tau_eff[:, None]))

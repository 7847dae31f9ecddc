"""Fast-dLLM v3 factor rule: commit the top n while (n + 1)(1 − c_n) < f; at least one.

Follows the paper's rule (the scan stops at the first n that fails); the reference code's
off-by-one that commits one extra token when the last masked token fails is not reproduced.
"""

from __future__ import annotations

import torch
from torch import Tensor


def select_factor(conf: Tensor, factor: Tensor) -> Tensor:
    """conf [B, Q] (−inf = not a candidate), factor [B] → commit mask [B, Q]."""
    sorted_conf, order = conf.sort(dim=1, descending=True)
    n = torch.arange(1, conf.shape[1] + 1, device=conf.device, dtype=conf.dtype)
    ok = ((n + 1) * (1 - sorted_conf) < factor[:, None]) & (sorted_conf > float("-inf"))
    count = ok.long().cumprod(dim=1).sum(dim=1).clamp(min=1)  # stop at the first failure
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(conf.shape[1], device=conf.device).expand_as(order))
    return (conf > float("-inf")) & (rank < count[:, None])

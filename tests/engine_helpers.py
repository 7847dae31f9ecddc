"""Small random models and an independent reference for the engine tests."""

from __future__ import annotations

import math

import torch

from workers.model.config import ModelConfig
from workers.model.transformer import DiffusionLM

MASK, EOS, PAD = 3, 2, 0


def tiny_model(seed: int = 0, peaked: float = 1.0, kv_heads: int = 2) -> DiffusionLM:
    """A random model; `peaked` scales the LM head so confidences are high and steps commit
    several tokens (a plain random model is near-uniform and commits one per step)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=40, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=kv_heads,
        intermediate_size=128, mask_token_id=MASK, eos_token_id=EOS, pad_token_id=PAD,
        max_seq_len=96,
    )  # fmt: skip
    model = DiffusionLM(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(peaked)
        model.lm_head.weight[EOS].zero_()  # EOS stays mid-range: answers run to full length
    return model


def _rope(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    ang = pos.double()[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1).float(), torch.cat([ang.sin()] * 2, -1).float()
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


@torch.no_grad()
def naive_forward(
    model: DiffusionLM,
    ids: torch.Tensor,  # [L] the whole canvas
    fed: list[int],  # positions fed as queries
    stale: list[tuple[torch.Tensor, torch.Tensor]] | None,  # per layer K/V [Hkv, L, hd]
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Explicit attention over (stale K/V with the fed positions replaced by fresh ones).
    Returns logits of the fed positions and the per-layer K/V it attended to."""
    cfg = model.cfg
    H, Hkv, hd = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    pos = torch.tensor(fed)
    h = model.embed(ids[pos])
    used = []
    for i, layer in enumerate(model.layers):
        a = layer.attn_norm(h)
        q = _rope(layer.attn.q_proj(a).view(-1, H, hd).transpose(0, 1), pos, cfg.rope_theta)
        k = _rope(layer.attn.k_proj(a).view(-1, Hkv, hd).transpose(0, 1), pos, cfg.rope_theta)
        v = layer.attn.v_proj(a).view(-1, Hkv, hd).transpose(0, 1)
        if stale is None:
            K, V = k, v
        else:
            K, V = stale[i][0].clone(), stale[i][1].clone()
            K[:, pos], V[:, pos] = k, v
        used.append((K, V))
        rep = H // Hkv
        Kr, Vr = K.repeat_interleave(rep, 0), V.repeat_interleave(rep, 0)
        att = torch.softmax(q @ Kr.transpose(1, 2) / math.sqrt(hd), dim=-1)
        o = (att @ Vr).transpose(0, 1).reshape(len(fed), -1)
        h = h + layer.attn.o_proj(o)
        h = h + layer.mlp(layer.mlp_norm(h))
    return model.logits(h), used


@torch.no_grad()
def llada_reference(
    model: DiffusionLM, prompt: list[int], gen_length: int, block_length: int, steps: int
) -> list[int]:
    """LLaDA's generate.py loop: no cache, fixed-count low-confidence remasking, greedy."""
    x = torch.tensor(prompt + [MASK] * gen_length)
    P, num_blocks = len(prompt), gen_length // block_length
    per_block = steps // num_blocks
    for b in range(num_blocks):
        s, e = P + b * block_length, P + (b + 1) * block_length
        base, extra = divmod(block_length, per_block)
        for i in range(per_block):
            k = base + (1 if i < extra else 0)
            logits = model(x[None])[0].float()
            logits[:, MASK] = float("-inf")
            x0 = logits.argmax(-1)
            conf = torch.softmax(logits, -1).gather(-1, x0[:, None]).squeeze(-1)
            allowed = torch.zeros_like(conf, dtype=torch.bool)
            allowed[s:e] = x[s:e] == MASK
            conf = torch.where(allowed, conf, torch.full_like(conf, float("-inf")))
            idx = conf.topk(k).indices
            x[idx] = x0[idx]
    return x[P:].tolist()

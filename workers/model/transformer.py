"""A bidirectional Llama-style transformer for masked diffusion LMs.

RMSNorm (fp32), RoPE, SwiGLU, grouped-query attention with optional q/k/v bias, untied LM head and
no causal mask. Attention does not own a cache: each forward receives an `AttnContext` that decides
which keys/values a layer attends to (fresh ones, or fresh ones merged into a cache), so the three
cache modes of Fast-dLLM are three contexts over one model (see workers/kv.py).
Shapes: B batch, T query tokens, K key tokens, H heads, Hkv kv heads, D hidden, hd head dim.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.model.config import ModelConfig


class AttnContext(Protocol):
    """What a forward pass attends to. `key_mask` is [B, 1, 1, K] bool (True = attend)."""

    key_mask: Tensor

    def kv(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Fresh post-RoPE k/v [B, Hkv, T, hd] → the k/v to attend to [B, Hkv, K, hd]."""
        ...


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # Normalise in fp32, cast back, then scale (LLaDA's RMSLayerNorm and HF Llama agree).
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class Rotary(nn.Module):
    """NeoX/Llama rotate-half RoPE with a precomputed fp32 table indexed by absolute position."""

    def __init__(self, head_dim: int, max_len: int, theta: float) -> None:
        super().__init__()
        inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        freqs = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.register_buffer("cos", emb.cos().float(), persistent=False)  # [max_len, hd]
        self.register_buffer("sin", emb.sin().float(), persistent=False)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        # x [B, H, T, hd], pos [B, T] → rotated x, computed in fp32
        cos, sin = self.cos[pos].unsqueeze(1), self.sin[pos].unsqueeze(1)  # [B, 1, T, hd]
        xf = x.float()
        half = xf.shape[-1] // 2
        rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
        return (xf * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, num_heads: int, num_kv_heads: int) -> None:
        super().__init__()
        hd = cfg.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, hd
        self.q_proj = nn.Linear(cfg.hidden_size, num_heads * hd, bias=cfg.qkv_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, num_kv_heads * hd, bias=cfg.qkv_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, num_kv_heads * hd, bias=cfg.qkv_bias)
        self.o_proj = nn.Linear(num_heads * hd, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor, pos: Tensor, rope: Rotary, ctx: AttnContext, layer: int) -> Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope(q, pos), rope(k, pos)
        k, v = ctx.kv(layer, k, v)  # [B, Hkv, K, hd]
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=ctx.key_mask, enable_gqa=self.num_kv_heads != self.num_heads
        )  # [B, H, T, hd]
        return self.o_proj(o.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, intermediate, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, cfg.hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, tp_size: int = 1) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(cfg, cfg.num_heads // tp_size, cfg.num_kv_heads // tp_size)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg, cfg.intermediate_size // tp_size)

    def forward(self, h: Tensor, pos: Tensor, rope: Rotary, ctx: AttnContext, layer: int) -> Tensor:
        h = h + self.attn(self.attn_norm(h), pos, rope, ctx, layer)
        return h + self.mlp(self.mlp_norm(h))


class DiffusionLM(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.rope = Rotary(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)

    def hidden(self, ids: Tensor, pos: Tensor, ctx: AttnContext) -> Tensor:
        """ids, pos [B, T] → final hidden states [B, T, D] (before the final norm)."""
        h = self.embed(ids)
        for i, layer in enumerate(self.layers):
            h = layer(h, pos, self.rope, ctx, i)
        return h

    def logits(self, h: Tensor) -> Tensor:
        """Hidden states [..., D] of only the positions the decoder needs → logits [..., V]."""
        return self.lm_head(self.norm(h))

    def forward(self, ids: Tensor, key_valid: Tensor | None = None) -> Tensor:
        """Plain full forward for training and tests: ids [B, T] → logits [B, T, V]."""
        B, T = ids.shape
        pos = torch.arange(T, device=ids.device).expand(B, T)
        ctx = FreshContext.for_batch(key_valid, B, T, ids.device)
        return self.logits(self.hidden(ids, pos, ctx))


class FreshContext:
    """Attend only to the K/V computed in this forward (full canvas, no cache)."""

    def __init__(self, key_mask: Tensor) -> None:
        self.key_mask = key_mask

    @classmethod
    def for_batch(
        cls, key_valid: Tensor | None, B: int, T: int, device: torch.device
    ) -> FreshContext:
        if key_valid is None:
            key_valid = torch.ones(B, T, dtype=torch.bool, device=device)
        return cls(key_valid[:, None, None, :])

    def kv(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        return k, v

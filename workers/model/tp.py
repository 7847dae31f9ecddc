"""Tensor-parallel sharding of DiffusionLM (Megatron style, as dInfer does for LLaDA).

Per block: q/k/v, gate and up are column-parallel (each rank keeps a contiguous slice of the output
rows: its heads, its part of the MLP width); o_proj and down_proj are row-parallel (each rank keeps
the matching input columns) and their partial outputs are summed by an all-reduce. That is two
all-reduces of [B, T, D] per layer. Embedding, final norm and LM head are replicated: the simplest
choice, it keeps the logits identical on every rank so each rank commits the same tokens (a
vocab-parallel head would save memory on 100K+ vocabularies at the cost of a gather per step).

The model code is not forked: `Block(cfg, tp_size)` already builds the per-rank widths, and the
all-reduce is a forward hook on the two row-parallel linears.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from workers.model.config import ModelConfig
from workers.model.loader import check_shapes
from workers.model.transformer import Block, DiffusionLM, Rotary


class TPConfigError(ValueError):
    pass


class GroupLost(RuntimeError):
    """A collective failed or timed out: a peer died or hangs. The group must be torn down."""


# parameter suffix → dim split across ranks (0: output rows, column-parallel; 1: input columns,
# row-parallel); anything not listed is replicated.
_SPLIT_DIM = {
    "attn.q_proj.weight": 0,
    "attn.q_proj.bias": 0,
    "attn.k_proj.weight": 0,
    "attn.k_proj.bias": 0,
    "attn.v_proj.weight": 0,
    "attn.v_proj.bias": 0,
    "attn.o_proj.weight": 1,
    "mlp.gate_proj.weight": 0,
    "mlp.up_proj.weight": 0,
    "mlp.down_proj.weight": 1,
}


def check_divisible(cfg: ModelConfig, tp_size: int) -> None:
    if tp_size < 1:
        raise TPConfigError(f"tp_size={tp_size} must be ≥ 1")
    for name in ("num_heads", "num_kv_heads", "intermediate_size"):
        value = getattr(cfg, name)
        if value % tp_size:
            raise TPConfigError(
                f"{name}={value} is not divisible by tp_size={tp_size}; "
                f"TP degrees this model supports divide all of num_heads={cfg.num_heads}, "
                f"num_kv_heads={cfg.num_kv_heads}, intermediate_size={cfg.intermediate_size}"
            )


def split_dim(name: str) -> int | None:
    """The dim along which parameter `name` (our naming) is sharded, or None if replicated."""
    if not name.startswith("layers."):
        return None
    suffix = name.split(".", 2)[2]  # drop "layers.{i}."
    return _SPLIT_DIM.get(suffix)


def shard_state_dict(
    state: dict[str, Tensor], cfg: ModelConfig, rank: int, tp_size: int
) -> dict[str, Tensor]:
    """Rank `rank`'s slice of a full state dict (our names). The full dict is left untouched, so a
    worker keeps it in host memory and reshards for a new group without rereading the disk.
    Contiguous row blocks keep GQA intact: rank r holds q heads [r·H/tp, (r+1)·H/tp) and exactly
    the kv heads [r·Hkv/tp, (r+1)·Hkv/tp) those q heads read."""
    check_divisible(cfg, tp_size)
    if not 0 <= rank < tp_size:
        raise TPConfigError(f"rank={rank} is outside [0, {tp_size})")
    out: dict[str, Tensor] = {}
    for name, t in state.items():
        dim = split_dim(name)
        if dim is None or tp_size == 1:
            out[name] = t
            continue
        width = t.shape[dim] // tp_size
        out[name] = t.narrow(dim, rank * width, width)
    return out


class AllReduceHook:
    """Forward hook that sums a row-parallel linear's partial output over the group, in place.

    After the first failure every later call fails at once: the runner retries a failed sub-batch
    row by row, and each retry must not wait out another collective timeout."""

    def __init__(self, group: dist.ProcessGroup | None) -> None:
        self.group = group
        self.error: BaseException | None = None

    def __call__(self, module: nn.Module, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
        if self.error is not None:
            raise GroupLost(f"process group already failed: {self.error}") from self.error
        try:
            dist.all_reduce(out, group=self.group)
        except Exception as e:  # gloo/NCCL raise RuntimeError subclasses, not one type
            self.error = e
            raise GroupLost(f"all-reduce failed: {e}") from e
        return out


def build_sharded_model(
    cfg: ModelConfig,
    full_state: dict[str, Tensor],
    rank: int,
    tp_size: int,
    group: dist.ProcessGroup | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[DiffusionLM, AllReduceHook]:
    """This rank's DiffusionLM: sharded blocks, replicated embedding/head, all-reduce hooks.
    Returns the hook too, so the caller can ask whether a collective has failed."""
    shard = shard_state_dict(full_state, cfg, rank, tp_size)
    with torch.device("meta"):  # no full-size random init: every weight comes from `shard`
        model = DiffusionLM(cfg)
        model.layers = nn.ModuleList(Block(cfg, tp_size) for _ in range(cfg.num_layers))
    check_shapes(model, shard)
    # copy=True: the model must never alias the full host copy kept for the next regroup.
    params = {k: v.to(device=device, dtype=dtype, copy=True) for k, v in shard.items()}
    model.load_state_dict({k: v.contiguous() for k, v in params.items()}, strict=True, assign=True)
    # RoPE tables are non-persistent buffers: not in the state dict, so build them for real.
    model.rope = Rotary(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta).to(device)
    hook = AllReduceHook(group)
    if tp_size > 1:
        for layer in model.layers:
            layer.attn.o_proj.register_forward_hook(hook)
            layer.mlp.down_proj.register_forward_hook(hook)
    return model.eval(), hook

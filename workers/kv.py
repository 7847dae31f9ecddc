"""Device state of the runner: per-slot canvases and K/V caches, and the attention contexts.

Each request in the runner owns one slot. The pool holds its canvas [max_len] and, per layer, its
post-RoPE K/V [Hkv, max_len, hd]. The three Fast-dLLM cache modes are three `AttnContext`s over it:
- full / refresh: attend to the K/V computed in this forward (refresh also writes them to the pool);
- reuse: the fresh K/V of the fed positions overwrite the pool at those positions, then attention
  runs over the pool. Feeding [s, e) gives dual cache (everything outside the block stale); feeding
  [s, L) gives prefix cache (everything before the block stale). One code path, two modes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from workers.model.config import ModelConfig


class KVPool:
    def __init__(
        self,
        cfg: ModelConfig,
        num_slots: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
        num_kv_heads: int | None = None,  # per rank under tensor parallelism
    ) -> None:
        hkv = num_kv_heads or cfg.num_kv_heads
        shape = (num_slots, hkv, max_len, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.num_layers)]
        self.canvas = torch.full((num_slots, max_len), cfg.pad_token_id, device=device)
        self.num_slots, self.max_len = num_slots, max_len
        self.free_slots = list(range(num_slots - 1, -1, -1))

    def allocate(self) -> int:
        if not self.free_slots:
            raise RuntimeError(f"all {self.num_slots} runner slots are in use")
        return self.free_slots.pop()

    def free(self, slot: int) -> None:
        self.free_slots.append(slot)


class RefreshContext:
    """Full forward over [0, Lmax); rows flagged in `write` store their K/V in their slots."""

    def __init__(self, pool: KVPool, slots: Tensor, key_mask: Tensor, write: Tensor) -> None:
        self.pool, self.key_mask = pool, key_mask
        self.write_slots = slots[write]
        self.write_rows = write.nonzero().squeeze(1)
        self.write_all = bool(write.all())
        self.slots = slots

    def kv(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        T = k.shape[2]
        if self.write_all:
            self.pool.k[layer][self.slots, :, :T] = k
            self.pool.v[layer][self.slots, :, :T] = v
        elif len(self.write_rows):
            self.pool.k[layer][self.write_slots, :, :T] = k[self.write_rows]
            self.pool.v[layer][self.write_slots, :, :T] = v[self.write_rows]
        return k, v


class ReuseContext:
    """Cached forward: fresh K/V of the fed positions replace the pool's, then attend to the pool.

    `entry_slot`/`entry_pos` [N] name the valid (row, query) entries, flattened row-major;
    `entry_index` [N] their index into the flattened [B * Q] queries."""

    def __init__(
        self,
        pool: KVPool,
        slots: Tensor,
        key_len: int,
        key_mask: Tensor,
        entry_index: Tensor,
        entry_slot: Tensor,
        entry_pos: Tensor,
    ) -> None:
        self.pool, self.slots, self.key_len, self.key_mask = pool, slots, key_len, key_mask
        self.entry_index, self.entry_slot, self.entry_pos = entry_index, entry_slot, entry_pos
        # Slots that form an ascending run are read as a view of the pool, not gathered: the
        # gather copies every cached K/V of the batch once per layer per step.
        first, n = int(slots[0]), len(slots)
        run = torch.arange(first, first + n, device=slots.device)
        self.rows: slice | Tensor = slice(first, first + n) if torch.equal(slots, run) else slots

    def kv(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        B, H, Q, hd = k.shape
        flat_k = k.transpose(1, 2).reshape(B * Q, H, hd)[self.entry_index]  # [N, Hkv, hd]
        flat_v = v.transpose(1, 2).reshape(B * Q, H, hd)[self.entry_index]
        pk, pv = self.pool.k[layer], self.pool.v[layer]
        pk[self.entry_slot, :, self.entry_pos] = flat_k
        pv[self.entry_slot, :, self.entry_pos] = flat_v
        return pk[self.rows, :, : self.key_len], pv[self.rows, :, : self.key_len]

"""ModelRunner: turns a StepPlan into tensors, runs the forward passes, returns a StepResult.

The only place tensors are built. It owns device state (slots: canvas + K/V) and makes no policy
decisions: which requests step, in which phase and with which rule all come from the plan.
Each step runs at most two sub-batches: the full-forward rows (FULL and REFRESH) and the reuse
rows (prefix and dual cache together), and times each.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from workers.denoise import commit_mask
from workers.kv import KVPool, RefreshContext, ReuseContext
from workers.model.transformer import DiffusionLM, FreshContext
from workers.sched.plan import CacheMode, NewSeq, Phase, SeqOutput, SeqStep, StepPlan, StepResult

log = logging.getLogger(__name__)


class RunnerError(ValueError):
    pass


@dataclass(slots=True)
class _Slot:
    slot: int
    length: int  # canvas length L
    prompt_len: int
    block_length: int
    cache_mode: CacheMode
    temperature: float
    generator: torch.Generator | None


class ModelRunner:
    def __init__(self, model: DiffusionLM, max_batch_size: int, max_canvas_len: int = 0) -> None:
        self.model, self.cfg = model, model.cfg
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.max_len = max_canvas_len or self.cfg.max_seq_len
        hkv = model.layers[0].attn.num_kv_heads
        self.pool = KVPool(self.cfg, max_batch_size, self.max_len, self.dtype, self.device, hkv)
        self.seqs: dict[str, _Slot] = {}

    # ---- membership ----

    def add(self, seq: NewSeq) -> None:
        L = len(seq.canvas)
        if L > self.max_len:
            raise RunnerError(
                f"canvas of {L} tokens is longer than the model's maximum {self.max_len}"
            )
        if (L - seq.prompt_len) % seq.block_length:
            raise RunnerError(
                f"answer length {L - seq.prompt_len} is not a multiple of "
                f"block_length {seq.block_length}"
            )
        slot = self.pool.allocate()
        self.pool.canvas[slot, :L] = torch.tensor(seq.canvas, device=self.device)
        gen = None
        if seq.temperature > 0:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(seq.seed)
        self.seqs[seq.req_id] = _Slot(
            slot, L, seq.prompt_len, seq.block_length, seq.cache_mode, seq.temperature, gen
        )

    def release(self, req_id: str) -> None:
        meta = self.seqs.pop(req_id, None)
        if meta is not None:
            self.pool.free(meta.slot)

    # ---- one step ----

    @torch.inference_mode()
    def execute(self, plan: StepPlan) -> StepResult:
        for req_id in plan.release:
            self.release(req_id)
        result = StepResult()
        for seq in plan.new:
            try:
                self.add(seq)
            except (RunnerError, RuntimeError) as e:
                result.failed[seq.req_id] = str(e)
        steps = [s for s in plan.steps if s.req_id in self.seqs]
        full = [s for s in steps if s.phase is not Phase.REUSE]
        reuse = [s for s in steps if s.phase is Phase.REUSE]
        if full:
            t0 = time.perf_counter()
            self._run_isolated(full, self._full_step, result)
            result.full_s = time.perf_counter() - t0
            lens = [self.seqs[s.req_id].length for s in full if s.req_id in self.seqs]
            result.num_full_rows, result.num_full_tokens = len(full), sum(lens)
            result.full_attn_area = sum(n * n for n in lens)
        if reuse:
            t0 = time.perf_counter()
            self._run_isolated(reuse, self._reuse_step, result)
            result.reuse_s = time.perf_counter() - t0
            live = [s for s in reuse if s.req_id in self.seqs]
            fed = [self._reuse_len(s) for s in live]
            result.num_reuse_rows, result.num_reuse_tokens = len(reuse), sum(fed)
            result.reuse_attn_area = sum(
                q * self.seqs[s.req_id].length for q, s in zip(fed, live, strict=True)
            )
        return result

    def _run_isolated(self, steps: list[SeqStep], fn, result: StepResult) -> None:  # type: ignore[no-untyped-def]
        """Run a sub-batch; if it raises, run its rows one by one so one bad request fails alone."""
        try:
            result.outputs.extend(fn(steps))
            return
        except Exception as e:  # noqa: BLE001 - any failure of a row must not stop the worker
            if len(steps) == 1:
                log.exception("step failed for request %s", steps[0].req_id)
                result.failed[steps[0].req_id] = f"{type(e).__name__}: {e}"
                self.release(steps[0].req_id)
                return
        for s in steps:
            self._run_isolated([s], fn, result)

    def _meta(self, steps: list[SeqStep]) -> tuple[list[_Slot], Tensor, Tensor, Tensor, Tensor]:
        metas = [self.seqs[s.req_id] for s in steps]
        dev = self.device
        slots = torch.tensor([m.slot for m in metas], device=dev)
        lengths = torch.tensor([m.length for m in metas], device=dev)
        starts = torch.tensor(
            [m.prompt_len + s.block * m.block_length for m, s in zip(metas, steps, strict=True)],
            device=dev,
        )
        blens = torch.tensor([m.block_length for m in metas], device=dev)
        return metas, slots, lengths, starts, blens

    def _full_step(self, steps: list[SeqStep]) -> list[SeqOutput]:
        metas, slots, lengths, starts, blens = self._meta(steps)
        Lmax = int(lengths.max())
        ar = torch.arange(Lmax, device=self.device)
        ids = self.pool.canvas[slots, :Lmax]
        pos = ar.expand(len(steps), Lmax)
        key_valid = ar[None, :] < lengths[:, None]
        write = torch.tensor([s.phase is Phase.REFRESH for s in steps], device=self.device)
        ctx = (
            RefreshContext(self.pool, slots, key_valid[:, None, None, :], write)
            if bool(write.any())
            else FreshContext(key_valid[:, None, None, :])
        )
        h = self.model.hidden(ids, pos, ctx)  # [B, Lmax, D]
        return self._decode(
            steps, metas, slots, h, starts, blens, query_start=torch.zeros_like(starts)
        )

    def _reuse_len(self, s: SeqStep) -> int:
        m = self.seqs[s.req_id]
        start = m.prompt_len + s.block * m.block_length
        return m.block_length if m.cache_mode is CacheMode.DUAL else m.length - start

    def _reuse_step(self, steps: list[SeqStep]) -> list[SeqOutput]:
        metas, slots, lengths, starts, blens = self._meta(steps)
        qlens = torch.tensor([self._reuse_len(s) for s in steps], device=self.device)
        Q = int(qlens.max())
        ar = torch.arange(Q, device=self.device)
        qvalid = ar[None, :] < qlens[:, None]  # [B, Q]
        qpos = torch.where(qvalid, starts[:, None] + ar[None, :], starts[:, None])
        ids = self.pool.canvas[slots[:, None], qpos]
        entry_index = qvalid.reshape(-1).nonzero().squeeze(1)
        Lmax = int(lengths.max())
        key_valid = torch.arange(Lmax, device=self.device)[None, :] < lengths[:, None]
        ctx = ReuseContext(
            self.pool,
            slots,
            Lmax,
            key_valid[:, None, None, :],
            entry_index,
            slots[:, None].expand_as(qpos).reshape(-1)[entry_index],
            qpos.reshape(-1)[entry_index],
        )
        h = self.model.hidden(ids, qpos, ctx)  # [B, Q, D]
        return self._decode(steps, metas, slots, h, starts, blens, query_start=starts)

    # ---- decode: logits of the block → commits ----

    def _decode(
        self,
        steps: list[SeqStep],
        metas: list[_Slot],
        slots: Tensor,
        h: Tensor,
        starts: Tensor,
        blens: Tensor,
        query_start: Tensor,
    ) -> list[SeqOutput]:
        cfg, dev = self.cfg, self.device
        Bq = int(blens.max())
        ar = torch.arange(Bq, device=dev)
        in_block = ar[None, :] < blens[:, None]
        pos = torch.where(in_block, starts[:, None] + ar[None, :], starts[:, None])  # [B, Bq]
        # Dream-style models predict position p from the hidden state at p − 1.
        src = pos - query_start[:, None] - (1 if cfg.logit_shift else 0)
        src_ok = src >= 0
        hsel = h.gather(1, src.clamp(min=0)[:, :, None].expand(-1, -1, h.shape[-1]))
        logits = self.model.logits(hsel).float()  # [B, Bq, V]
        logits[..., cfg.mask_token_id] = float("-inf")  # the mask token is never a prediction
        x0 = self._choose(logits, metas)
        conf = torch.softmax(logits, dim=-1).gather(-1, x0[..., None]).squeeze(-1)
        cur = self.pool.canvas[slots[:, None], pos]
        masked = (cur == cfg.mask_token_id) & in_block
        conf = torch.where(masked & src_ok, conf, torch.full_like(conf, float("-inf")))
        commit = commit_mask(conf, steps, [m.block_length for m in metas])
        if cfg.logit_shift:
            commit = self._force_first(commit, steps, masked)
        self.pool.canvas[slots[:, None].expand_as(pos)[commit], pos[commit]] = x0[commit]
        return self._outputs(steps, metas, slots, pos, commit, x0, conf, starts, blens)

    def _choose(self, logits: Tensor, metas: list[_Slot]) -> Tensor:
        """argmax, or Gumbel-max sampling (argmax of logits + T·g) for rows with a temperature."""
        x0 = logits.argmax(-1)
        for i, m in enumerate(metas):
            if m.temperature > 0:
                u = torch.rand(
                    logits.shape[1:], generator=m.generator, device=self.device, dtype=torch.float64
                )
                g = -torch.log(-torch.log(u.clamp_min(1e-300)))
                x0[i] = (logits[i].double() + m.temperature * g).argmax(-1)
        return x0

    def _force_first(self, commit: Tensor, steps: list[SeqStep], masked: Tensor) -> Tensor:
        # With shifted logits a cached step cannot predict the block's first position (its source
        # is outside the fed block), so a refresh commits exactly that position (Fast-dLLM Dream).
        for i, s in enumerate(steps):
            if s.phase is Phase.REFRESH and bool(masked[i, 0]):
                commit[i] = False
                commit[i, 0] = True
        return commit

    def _outputs(
        self,
        steps: list[SeqStep],
        metas: list[_Slot],
        slots: Tensor,
        pos: Tensor,
        commit: Tensor,
        x0: Tensor,
        conf: Tensor,
        starts: Tensor,
        blens: Tensor,
    ) -> list[SeqOutput]:
        eos, mask_id, dev = self.cfg.eos_token_id, self.cfg.mask_token_id, self.device
        # An EOS commit means the rest of the answer is EOS: fill it, so later blocks are skipped.
        eos_hit = commit & (x0 == eos)
        big = torch.full_like(pos, 1 << 30)
        eos_from = torch.where(eos_hit, pos + 1, big).min(dim=1).values  # [B]
        lengths = torch.tensor([m.length for m in metas], device=dev)
        prompt = torch.tensor([m.prompt_len for m in metas], device=dev)
        ar = torch.arange(int(lengths.max()), device=dev)[None, :]
        canvas = self.pool.canvas[slots, : ar.shape[1]]  # a copy [B, Lmax]
        fill = (canvas == mask_id) & (ar >= eos_from[:, None]) & (ar < lengths[:, None])
        if bool(fill.any()):
            canvas[fill] = eos
            self.pool.canvas[slots, : ar.shape[1]] = canvas
        answer_masked = (canvas == mask_id) & (ar >= prompt[:, None]) & (ar < lengths[:, None])
        block_masked = answer_masked & (ar >= starts[:, None]) & (ar < (starts + blens)[:, None])
        conf_min = torch.where(commit, conf, torch.full_like(conf, 2.0)).min(-1).values
        rows = zip(
            commit.tolist(), pos.tolist(), x0.tolist(), eos_from.tolist(),
            (~answer_masked.any(1)).tolist(), (~block_masked.any(1)).tolist(), conf_min.tolist(),
            strict=True,
        )  # fmt: skip
        outs = []
        for s, (c, p, t, e, finished, block_done, cmin) in zip(steps, rows, strict=True):
            outs.append(
                SeqOutput(
                    s.req_id,
                    positions=[pi for pi, ci in zip(p, c, strict=True) if ci],
                    tokens=[ti for ti, ci in zip(t, c, strict=True) if ci],
                    eos_fill_from=None if e >= 1 << 30 else e,
                    block_done=block_done,
                    finished=finished,
                    min_confidence=cmin,
                )
            )
            if finished:
                self.release(s.req_id)
        return outs

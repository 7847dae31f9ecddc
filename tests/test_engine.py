"""Engine semantics: cache modes, decoding rules, batching, termination, errors."""

from __future__ import annotations

import pytest
import torch

from tests.engine_helpers import EOS, MASK, llada_reference, naive_forward, tiny_model
from workers.engine import Engine
from workers.kv import KVPool, RefreshContext, ReuseContext
from workers.runner import ModelRunner, RunnerError
from workers.sched.plan import (
    CacheMode,
    FactorRule,
    FixedCountRule,
    NewSeq,
    Phase,
    SeqStep,
    StepPlan,
    ThresholdRule,
)
from workers.sched.scheduler import Scheduler, SchedulerConfig
from workers.sched.state import SeqRequest

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21, 22]]


def _refresh_then_reuse(model, canvas: list[int], s: int, e: int, mode: CacheMode, edit):
    """Refresh over `canvas`, apply `edit` (commits), then one reuse step feeding [s, e) (dual)
    or [s, L) (prefix). Returns (reuse logits of the block, refresh-time K/V per layer)."""
    L = len(canvas)
    pool = KVPool(model.cfg, 2, 64, torch.float32, "cpu")
    slots = torch.tensor([1])
    ids = torch.tensor([canvas])
    key_mask = torch.ones(1, 1, 1, L, dtype=torch.bool)
    with torch.no_grad():
        model.hidden(
            ids, torch.arange(L)[None], RefreshContext(pool, slots, key_mask, torch.tensor([True]))
        )
        stale = [
            (pool.k[i][1, :, :L].clone(), pool.v[i][1, :, :L].clone())
            for i in range(len(model.layers))
        ]
        new = edit(list(canvas))
        q_end = e if mode is CacheMode.DUAL else L
        fed = torch.arange(s, q_end)[None]
        ctx = ReuseContext(
            pool, slots, L, key_mask, torch.arange(q_end - s), slots.repeat(q_end - s), fed[0]
        )
        h = model.hidden(torch.tensor([new])[:, s:q_end], fed, ctx)
        return model.logits(h[0, : e - s]), stale, new


@pytest.mark.parametrize("mode", [CacheMode.DUAL, CacheMode.PREFIX])
def test_reuse_on_unchanged_canvas_equals_full_forward(mode) -> None:
    model = tiny_model()
    canvas = PROMPTS[0] + [MASK] * 32
    s, e = 6 + 8, 6 + 16
    logits, _, _ = _refresh_then_reuse(model, canvas, s, e, mode, edit=lambda c: c)
    with torch.no_grad():
        full = model(torch.tensor([canvas]))[0, s:e]
    assert (logits - full).abs().max().item() <= 1e-5


@pytest.mark.parametrize("mode", [CacheMode.DUAL, CacheMode.PREFIX])
def test_reuse_after_commits_equals_stale_cache_reference(mode) -> None:
    model = tiny_model()
    canvas = PROMPTS[0] + [MASK] * 32
    s, e = 6 + 8, 6 + 16

    def commit(c: list[int]) -> list[int]:
        c[s + 1], c[s + 4] = 30, 31  # two commits inside the block since the refresh
        return c

    logits, stale, new = _refresh_then_reuse(model, canvas, s, e, mode, edit=commit)
    fed = list(range(s, e if mode is CacheMode.DUAL else len(canvas)))
    ref, _ = naive_forward(model, torch.tensor(new), fed, stale)
    assert (logits - ref[: e - s]).abs().max().item() <= 1e-5
    # ...and it is an approximation: a fresh full forward of the new canvas differs.
    with torch.no_grad():
        fresh = model(torch.tensor([new]))[0, s:e]
    assert (logits - fresh).abs().max().item() > 1e-4


def test_naive_full_matches_model() -> None:
    model = tiny_model()
    canvas = torch.tensor(PROMPTS[0] + [MASK] * 16)
    ref, _ = naive_forward(model, canvas, list(range(len(canvas))), None)
    with torch.no_grad():
        assert (model(canvas[None])[0] - ref).abs().max().item() <= 1e-5


def test_tau_one_is_one_token_per_step_and_matches_llada_loop() -> None:
    model = tiny_model(peaked=20.0)
    engine = Engine(model, None, max_batch_size=4)
    outs = engine.generate(PROMPTS, 32, 8, ThresholdRule(1.0), CacheMode.NONE)
    fixed = engine.generate(PROMPTS, 32, 8, FixedCountRule(8), CacheMode.NONE)
    for p, o, f in zip(PROMPTS, outs, fixed, strict=True):
        assert o.tokens_per_step == [1] * 32
        ref = llada_reference(model, p, 32, 8, steps=32)
        assert EOS not in ref
        assert o.answer_ids == ref == f.answer_ids


def test_fixed_count_two_per_step_matches_llada_loop() -> None:
    model = tiny_model(peaked=20.0)
    outs = Engine(model, None).generate(PROMPTS, 32, 8, FixedCountRule(4), CacheMode.NONE)
    for p, o in zip(PROMPTS, outs, strict=True):
        assert o.tokens_per_step == [2] * 16
        assert o.answer_ids == llada_reference(model, p, 32, 8, steps=16)


def _run(model, joins: dict[int, list[SeqRequest]], max_batch: int = 8) -> dict[str, list[int]]:
    """Drive scheduler + runner; requests join at the step index given by `joins`."""
    runner = ModelRunner(model, max_batch)
    sched = Scheduler(SchedulerConfig(MASK, EOS, max_batch))
    step, done = 0, {}
    while sched.has_work or any(k >= step for k in joins):
        for r in joins.get(step, []):
            sched.add(r)
        plan = sched.schedule(0.0)
        for u in sched.update(plan, runner.execute(plan), 0.0):
            if u.finished:
                done[u.req_id] = sched.canvas(u.req_id)
        step += 1
    return done


def _req(i: int, prompt: list[int], gen: int, block: int, rule, mode) -> SeqRequest:
    return SeqRequest(f"r{i}", prompt + [MASK] * gen, len(prompt), block, 0.0, rule, mode)


def test_heterogeneous_batch_commits_what_each_commits_alone() -> None:
    model = tiny_model(peaked=6.0)
    reqs = [
        _req(0, PROMPTS[0], 32, 8, ThresholdRule(0.9), CacheMode.DUAL),
        _req(1, PROMPTS[1], 48, 16, ThresholdRule(0.5), CacheMode.PREFIX),
        _req(2, PROMPTS[2], 16, 8, ThresholdRule(0.7), CacheMode.NONE),
        _req(3, PROMPTS[0][:4], 32, 16, FactorRule(1.0), CacheMode.DUAL),
        _req(4, PROMPTS[1], 24, 8, FixedCountRule(4), CacheMode.PREFIX),
    ]
    together = _run(model, {0: reqs[:2], 2: reqs[2:4], 5: reqs[4:]})
    assert set(together) == {r.req_id for r in reqs}
    for r in reqs:
        assert MASK not in together[r.req_id]
        assert together[r.req_id] == _run(model, {0: [r]})[r.req_id], r.req_id


def test_peaked_model_commits_several_tokens_per_step() -> None:
    out = Engine(tiny_model(peaked=6.0), None).generate(PROMPTS, 32, 8, ThresholdRule(0.5))
    assert max(max(o.tokens_per_step) for o in out) > 1


def test_near_uniform_confidence_commits_only_the_top_token() -> None:
    model = tiny_model(peaked=0.05)  # confidences ≈ 1/vocab, far below τ
    for mode in CacheMode:
        outs = Engine(model, None).generate(PROMPTS, 32, 8, ThresholdRule(0.9), mode)
        for o in outs:
            assert o.tokens_per_step == [1] * 32 and o.steps == 32
            assert MASK not in o.answer_ids


def test_mask_token_is_never_committed_and_progress_is_guaranteed() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight[MASK] = model.lm_head.weight.abs().max() * 100  # mask always wins
    for rule in (ThresholdRule(0.9), FactorRule(1.0), FixedCountRule(8)):
        for o in Engine(model, None).generate(PROMPTS, 16, 8, rule, CacheMode.DUAL):
            assert MASK not in o.answer_ids
            assert min(o.tokens_per_step) >= 1 and o.steps <= 16


def test_eos_fills_the_rest_and_finishes_early() -> None:
    model = tiny_model()
    # EOS is the confident prediction everywhere: logits 0 except EOS at 50.
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.lm_head.register_forward_hook(lambda m, i, o: o.index_fill(-1, torch.tensor([EOS]), 50.0))
    outs = Engine(model, None).generate(PROMPTS, 32, 8, ThresholdRule(0.9), CacheMode.DUAL)
    for o in outs:
        assert o.answer_ids == [EOS] * 32
        assert o.steps == 1  # the first step commits EOS; every later block is skipped


def test_clear_errors() -> None:
    model = tiny_model()
    runner = ModelRunner(model, 2)
    with pytest.raises(
        RunnerError, match="canvas of 100 tokens is longer than the model's maximum 96"
    ):
        runner.add(NewSeq("a", [5] * 4 + [MASK] * 96, 4, 8))
    with pytest.raises(RunnerError, match="answer length 30 is not a multiple of block_length 8"):
        runner.add(NewSeq("b", [5] * 4 + [MASK] * 30, 4, 8))
    for tau in (0.0, -0.1, 1.01):
        with pytest.raises(ValueError, match=rf"threshold tau={tau} is outside \(0, 1\]"):
            ThresholdRule(tau)
    out = Engine(model, None).generate([[5] * 4], 100, 10)[0]
    assert out.failed and "longer than the model's maximum" in out.failed


def test_poison_row_fails_alone() -> None:
    model = tiny_model()
    runner = ModelRunner(model, 4)
    good, bad = (
        NewSeq("good", [5, 6] + [MASK] * 8, 2, 8),
        NewSeq("bad", [5, 999] + [MASK] * 8, 2, 8),
    )
    plan = StepPlan(
        new=[good, bad],
        steps=[SeqStep(n, 0, Phase.REFRESH, ThresholdRule(0.9)) for n in ("good", "bad")],
    )
    result = runner.execute(plan)
    assert list(result.failed) == ["bad"] and "IndexError" in result.failed["bad"]
    assert [o.req_id for o in result.outputs] == ["good"]

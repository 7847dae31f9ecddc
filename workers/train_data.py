"""Training batches for the demo task: prompt + EOS-padded answer, masked LLaDA-style."""

from __future__ import annotations

import random

import torch
from torch import Tensor

from common.task import GEN_LENGTH, Problem, sample_answer, sample_problem
from workers.tokenizer import EOS, PAD, vocab

VOCAB = vocab()
PAD_ID, EOS_ID = VOCAB[PAD], VOCAB[EOS]


def encode(text: str) -> list[int]:
    return [VOCAB[c] for c in text]


def answer_ids(answer: str) -> list[int]:
    return encode(answer) + [EOS_ID] * (GEN_LENGTH - len(answer))


def collate(prompts: list[list[int]], answers: list[list[int]]) -> tuple[Tensor, Tensor, Tensor]:
    """Prompt at positions 0..P-1, answer right after, right-padded to the longest row.

    Returns ids [B, T], key_valid [B, T] and answer_pos [B, GEN_LENGTH] (canvas positions).
    """
    lens = [len(p) + GEN_LENGTH for p in prompts]
    T = max(lens)
    ids = torch.full((len(prompts), T), PAD_ID, dtype=torch.long)
    for b, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        ids[b, : len(p) + len(a)] = torch.tensor(p + a)
    valid = torch.arange(T)[None, :] < torch.tensor(lens)[:, None]
    start = torch.tensor([len(p) for p in prompts])[:, None]
    return ids, valid, start + torch.arange(GEN_LENGTH)[None, :]


def train_batch(seed: int, step: int, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Batch `step` of the stream: a pure function of (seed, step), so resuming replays exactly."""
    rng = random.Random(f"train:{seed}:{step}")
    problems: list[Problem] = [sample_problem(rng, "train") for _ in range(batch_size)]
    # A fresh answer order every time the problem is seen: the model must learn the distribution.
    answers = [answer_ids(sample_answer(p, rng)) for p in problems]
    return collate([encode(p.prompt) for p in problems], answers)


def mask_answers(
    ids: Tensor,
    answer_pos: Tensor,
    mask_id: int,
    gen: torch.Generator,
    block_rows: float = 0.0,
    block_length: int = 16,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mask answer tokens; returns noised ids [B, T], loss weights [B, GEN_LENGTH] and t [B, 1].

    LLaDA rows mask each answer token with probability t ~ U(0, 1) and weight masked ones 1/t.
    A `block_rows` share of rows instead looks like the engine's semi-autoregressive decoding: a
    random block k is masked at rate t, earlier blocks are clean and later ones fully masked;
    only block k is in the loss. Random masks almost never leave 16+ masked positions right
    after a clean prefix, so without these rows the model is overconfident about the layout of
    a fresh block, exactly where threshold decoding commits many tokens at once.
    """
    B = ids.shape[0]
    t = torch.rand(B, 1, generator=gen).clamp_min(1e-3)
    masked = torch.rand(B, GEN_LENGTH, generator=gen) < t
    block_of = torch.arange(GEN_LENGTH)[None, :] // block_length  # [1, G]
    k = torch.randint(0, GEN_LENGTH // block_length, (B, 1), generator=gen)
    semi = torch.rand(B, 1, generator=gen) < block_rows
    in_loss = torch.where(semi, block_of == k, torch.ones_like(masked)) & masked
    masked = torch.where(semi, (block_of > k) | ((block_of == k) & masked), masked)
    noised = ids.clone()
    rows = torch.arange(B)[:, None].expand_as(answer_pos)
    noised[rows[masked], answer_pos[masked]] = mask_id
    return noised, in_loss / t, t

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
    ids: Tensor, answer_pos: Tensor, mask_id: int, gen: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Mask each answer token with probability t ~ U(0, 1) drawn per row.

    Returns noised ids [B, T], masked [B, GEN_LENGTH] bool and t [B, 1].
    """
    B = ids.shape[0]
    t = torch.rand(B, 1, generator=gen).clamp_min(1e-3)
    masked = torch.rand(B, GEN_LENGTH, generator=gen) < t
    noised = ids.clone()
    rows = torch.arange(B)[:, None].expand_as(answer_pos)
    noised[rows[masked], answer_pos[masked]] = mask_id
    return noised, masked, t

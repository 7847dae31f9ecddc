"""The demo task's generator and checker, and the character tokenizer (no model, no training)."""

from __future__ import annotations

import random

import pytest

from common.task import (
    ANSWER_CHARS,
    GEN_LENGTH,
    LABELS,
    Problem,
    check,
    parse_prompt,
    problems,
    sample_answer,
)


@pytest.fixture(scope="module")
def train_set() -> list[Problem]:
    return problems(seed=0, split="train", n=300)


def test_generated_answers_check(train_set: list[Problem]) -> None:
    rng = random.Random(1)
    for p in train_set:
        answer = sample_answer(p, rng)
        assert check(p, answer), (p.prompt, answer)
        assert ANSWER_CHARS[0] <= len(answer) <= ANSWER_CHARS[1] < GEN_LENGTH


def test_answers_span_three_blocks_and_prompts_vary(train_set: list[Problem]) -> None:
    assert min(len(sample_answer(p, random.Random(0))) for p in train_set) > 32
    assert len({len(p.prompt) for p in train_set}) >= 8


def test_any_order_inside_a_group_is_correct() -> None:
    p = Problem(("abd", "ce", "ccfg", "hi"))
    assert check(p, "Adba3|Bec2|Cgcfc4|Dih2|")
    assert check(p, "Aabd3|Bce2|Cccfg4|Dhi2|")


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda a: a[:-1],  # missing final separator
        lambda a: a + "A",  # trailing junk
        lambda a: a.replace("3", "4", 1),  # wrong count
        lambda a: a.replace("b", "e", 1),  # letter from another group
        lambda a: a.replace("Cgcfc", "Cgcff", 1),  # duplicated letter, one missing
        lambda a: a.replace("B", "C", 1),  # wrong label
        lambda a: a.replace("Bec2|", "", 1),  # a group left out
        lambda a: a.replace("Adba3|Bec2|", "Bec2|Adba3|", 1),  # groups swapped
    ],
)
def test_corrupted_answers_fail(corrupt) -> None:
    p = Problem(("abd", "ce", "ccfg", "hi"))
    answer = "Adba3|Bec2|Cgcfc4|Dih2|"
    assert check(p, answer)
    assert not check(p, corrupt(answer))


def test_random_corruptions_fail(train_set: list[Problem]) -> None:
    rng = random.Random(2)
    alphabet = "abcdefghijklmnop" + LABELS + "0123456789|"
    for p in train_set:
        answer = sample_answer(p, rng)
        i = rng.randrange(len(answer))
        c = rng.choice([x for x in alphabet if x != answer[i]])
        swapped = answer[:i] + c + answer[i + 1 :]
        # Replacing one character can only stay correct by moving a letter within its group,
        # which a single substitution cannot do.
        assert not check(p, swapped), (p.prompt, answer, swapped)


def test_train_and_test_never_overlap() -> None:
    train = {p.prompt for seed in range(3) for p in problems(seed, "train", 2000)}
    test = {p.prompt for seed in range(3) for p in problems(seed, "test", 500)}
    assert not train & test
    assert all(parse_prompt(t).split == "test" for t in test)


def test_generation_is_seeded() -> None:
    assert problems(5, "test", 20) == problems(5, "test", 20)
    assert problems(5, "test", 20) != problems(6, "test", 20)


def test_prompt_round_trips(train_set: list[Problem]) -> None:
    for p in train_set[:50]:
        assert parse_prompt(p.prompt) == p
    with pytest.raises(ValueError):
        parse_prompt("Aab|")


def test_tokenizer_round_trips_through_autotokenizer(tmp_path, train_set) -> None:
    from transformers import AutoTokenizer

    from workers.tokenizer import EOS, MASK, PAD, save_tokenizer

    save_tokenizer(tmp_path, max_len=128)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert (tok.mask_token, tok.eos_token, tok.pad_token) == (MASK, EOS, PAD)
    assert tok.pad_token_id != tok.mask_token_id
    for p in train_set[:50]:
        text = p.prompt + sample_answer(p, random.Random(0))
        ids = tok(text)["input_ids"]
        assert len(ids) == len(text)  # one token per character, no BOS/EOS added
        assert tok.decode(ids) == text
        padded = ids + [tok.eos_token_id] * 3
        assert tok.decode(padded, skip_special_tokens=True) == text

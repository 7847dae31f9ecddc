"""Character-level tokenizer for the demo model, saved in the format AutoTokenizer loads.

One id per character of the task alphabet plus three specials; decoding concatenates characters
(no spaces), so decode(encode(s)) == s for any string over the alphabet.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from common.task import LABELS, LETTERS, PROMPT_END, SEP

PAD, EOS, MASK = "<pad>", "<eos>", "<mask>"
SPECIALS = (PAD, EOS, MASK)
CHARS = LETTERS + LABELS + "0123456789" + SEP + PROMPT_END


def vocab() -> dict[str, int]:
    return {tok: i for i, tok in enumerate([*SPECIALS, *CHARS])}


def build_tokenizer(max_len: int) -> PreTrainedTokenizerFast:
    core = Tokenizer(models.WordLevel(vocab=vocab(), unk_token=PAD))
    # Every character is its own pre-token; Fuse joins them back without separators.
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        mask_token=MASK,
        model_max_length=max_len,
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(model_dir: str | Path, max_len: int) -> PreTrainedTokenizerFast:
    tok = build_tokenizer(max_len)
    tok.save_pretrained(str(model_dir))
    return tok

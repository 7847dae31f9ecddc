"""A tiny random checkpoint with a char-level tokenizer, and process helpers, for data-plane tests.

The demo model replaces the random one where it is present (see `model_dir` in conftest)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from common.redis_server import free_port

CHARS = "abcdefghijklmnopqrstuvwxyz ,.:"
SPECIALS = ["[PAD]", "[UNK]", "[EOS]", "[MASK]"]  # ids 0..3 match tests.engine_helpers
REPO = Path(__file__).resolve().parents[1]


def save_char_tokenizer(out: Path) -> None:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + list(CHARS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]",
        mask_token="[MASK]",
    )  # fmt: skip
    fast.save_pretrained(str(out))


def save_tiny_checkpoint(out: Path) -> Path:
    import torch

    from tests.engine_helpers import tiny_model
    from workers.model.loader import save_model

    model = tiny_model(seed=0, peaked=8.0)
    with torch.no_grad():  # answers in plain letters: PAD, UNK, EOS, MASK never win
        model.lm_head.weight[:4].fill_(0.0)
    save_model(model, out)
    save_char_tokenizer(out)
    return out


def child_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "REDIS_URL": redis_url, "OMP_NUM_THREADS": "1", "DILA_ENGINE__NUM_THREADS": "1",
        "PYTHONPATH": str(REPO), **extra,
    })  # fmt: skip
    return env


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        [sys.executable, *args], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def start_gateway(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**env, "DILA_GATEWAY__PORT": str(port)}
    proc = spawn(["-m", "gateway"], env, log_path)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=0.5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"gateway did not start: {log_path.read_text()[-2000:]}")

"""Slots (worker processes the plan groups) on a test stack, and plan helpers."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.plan import ClusterPlan, GroupPlan, PoolSpec
from common.plan_bus import live_slots, publish_plan
from dilaserve.plan_cmd import wait_applied
from tests.dataplane_helpers import CHARS, SPECIALS, save_char_tokenizer, spawn
from tests.stack import Stack

# Short timeouts: a dead peer or a missing one must show within seconds in tests.
SLOT_ENV = {
    "DILA_SLOT__HEARTBEAT_S": "0.3",
    "DILA_SLOT__PLAN_POLL_S": "0.1",
    "DILA_SLOT__JOIN_TIMEOUT_S": "5",
    "DILA_SLOT__COLLECTIVE_TIMEOUT_S": "4",
    "DILA_SLOT__RETRY_S": "0.3",
    "DILA_WORKER__DRAIN_TIMEOUT_S": "20",
}


@dataclass
class Slots:
    stack: Stack
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, device: str, **env: str) -> str:
        slot_id = f"n0/{device}"
        log = self.stack.log_dir / f"slot-{device.replace(':', '')}.log"
        args = ["-m", "dilaserve", "slot", "--node", "n0", "--device", device]
        self.procs[slot_id] = spawn(args, {**self.stack.env, **SLOT_ENV, **env}, log)
        self.stack.workers.append(self.procs[slot_id])  # Stack.close() kills them
        return slot_id

    def wait_registered(self, n: int, timeout_s: float = 60) -> None:
        bus = self.stack.bus()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready = [s for s in live_slots(bus.client, bus.keys) if s.state != "loading"]
            if len(ready) >= n:
                return
            dead = [s for s, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"slots {dead} exited: {self.stack.logs()}")
            time.sleep(0.1)
        raise RuntimeError(f"{n} slots did not register in {timeout_s}s: {self.stack.logs()}")

    def apply(self, plan: ClusterPlan, timeout_s: float = 60) -> tuple[ClusterPlan, float]:
        """Publish `plan`; return it (versioned) and the seconds until every slot serves it."""
        bus = self.stack.bus()
        published = publish_plan(bus.client, bus.keys, plan)
        took_s = wait_applied(bus.client, bus.keys, published, timeout_s)
        assert took_s is not None, f"plan v{published.version} not applied: {self.stack.logs()}"
        return published, took_s


def save_tp_checkpoint(out: Path) -> Path:
    """A tiny random model (TP-2 divisible) whose greedy answers are varied, non-empty letters,
    with the data-plane char tokenizer: a wrong token shows as a different text."""
    import torch

    from workers.model.config import ModelConfig
    from workers.model.loader import save_model
    from workers.model.transformer import DiffusionLM

    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=len(SPECIALS) + len(CHARS), hidden_size=64, num_layers=2, num_heads=4,
        num_kv_heads=2, intermediate_size=128, mask_token_id=3, eos_token_id=2, pad_token_id=0,
        max_seq_len=96,
    )  # fmt: skip
    model = DiffusionLM(cfg).eval()
    with torch.no_grad():
        for p in model.layers.parameters():
            if p.dim() == 2:
                p.mul_(4.0)  # louder blocks: position- and context-dependent answers
        model.lm_head.weight.mul_(8.0)
        model.lm_head.weight[:2].fill_(0.0)  # never PAD or UNK
        model.lm_head.weight[:2, 0] = -100.0
        model.lm_head.weight[2].zero_()  # EOS mid-range
    save_model(model, out)
    save_char_tokenizer(out)
    return out


def tp_plan(groups: list[list[str]], pool: str = "default", tau: float = 0.9) -> ClusterPlan:
    """One pool; each inner list is a group (all of one size)."""
    tp = len(groups[0])
    return ClusterPlan(
        source="test",
        pools=[PoolSpec(pool_id=pool, tp=tp, tau=tau)],
        groups=[
            GroupPlan(group_id=f"g{i}-tp{tp}", pool_id=pool, slots=s) for i, s in enumerate(groups)
        ],  # fmt: skip
    )


def submit(url: str, prompt: str, max_tokens: int, block: int) -> str:
    body = {"prompt": prompt, "max_tokens": max_tokens, "block_length": block,
            "slo_class": "batch"}  # fmt: skip
    r = httpx.post(f"{url}/v1/requests", json=body, timeout=10)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])

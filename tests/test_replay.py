"""The load generator against the real stack: open-loop replay, every answer checked, misses
counted as misses (never a crash of the run)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from common.config import DEFAULT_MODEL_DIR
from common.redis_server import RedisServer, free_port
from loadgen import workload
from loadgen.bench import job_for, stack_env
from loadgen.metrics import Outcome, achieved_rate, by_class, summarize
from loadgen.replay import Job, run_replay
from loadgen.traces import parse_mix
from tests.stack import serving

CLASSES = "interactive=2000:0.8:drop,standard=8000:0.8:serve"

pytestmark = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="the demo model is not shipped"
)


def test_replay_checks_every_answer_on_the_real_stack(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    classes = workload.parse_classes(CLASSES)
    planned = workload.build("poisson", 8.0, 1.5, parse_mix("interactive=0.5,standard=0.5"),
                             classes, seed=3)  # fmt: skip
    args = argparse.Namespace(max_batch_size=8)
    env = stack_env(args, "dilaserve", classes)
    with serving(redis_server.url, DEFAULT_MODEL_DIR, tmp_path, env) as stack:
        outcomes = run_replay(stack.url, [job_for(p, "replay-test") for p in planned])
    assert len(outcomes) == len(planned) > 3
    assert {o.status for o in outcomes} == {"done"}, [o.extra for o in outcomes]
    assert all(o.e2e_ms and o.e2e_ms > 0 and o.steps and o.mean_tau for o in outcomes)
    summary = by_class(outcomes, 1.5)["all"]
    assert summary["num_requests"] == len(planned)
    assert summary["accuracy"] >= 0.9  # the demo model at τ ≥ 0.8 (checked answers, not text)
    # Each submit's gateway stamp follows its planned arrival: the lag is the harness's own delay
    # (small and ≥ 0 up to clock resolution), and the load really offered is the planned one.
    assert all(o.send_lag_ms is not None and -5.0 < o.send_lag_ms < 1000.0 for o in outcomes)
    planned_rps = (len(planned) - 1) / (planned[-1].t_s - planned[0].t_s)
    assert summary["achieved_rps"] == pytest.approx(planned_rps, rel=0.5)


def test_replay_against_no_server_reports_misses() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    jobs = [Job(f"j{i}", 0.01 * i, {"prompt": "x"}, "standard") for i in range(3)]
    outcomes = run_replay(url, jobs)
    assert [o.status for o in outcomes] == ["lost"] * 3
    assert all("reason" in o.extra for o in outcomes)
    summary = by_class(outcomes, 1.0)["all"]
    assert summary["reasons"] and sum(summary["reasons"].values()) == 3
    assert summary["achieved_rps"] is None  # nothing reached a gateway


def test_achieved_rate_counts_what_reached_the_gateway_not_the_plan() -> None:
    # Planned at 10 req/s over 1 s, but the later submits reached the gateway ever later (a
    # starved load generator): 11 requests over 2 s as sent.
    outs = [Outcome(f"r{i}", "standard", 0.1 * i, "done", send_lag_ms=100.0 * i)
            for i in range(11)]  # fmt: skip
    assert achieved_rate(outs) == pytest.approx(10 / 2.0)
    assert summarize(outs, 1.0)["p50_send_lag_ms"] == pytest.approx(500.0)

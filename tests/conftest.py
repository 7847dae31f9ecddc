"""Shared fixtures: a private redis-server for the whole session, a clean database per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.redis_server import RedisServer

# Several processes share two cores in tests: one torch thread each avoids spin-wait storms.
os.environ.setdefault("OMP_NUM_THREADS", "1")

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture()
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.close()


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


# ---- data plane (gateway, workers): a model directory and process helpers ----


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random checkpoint with a char tokenizer (max 96 positions): data-plane tests that
    depend on its timing and limits (faults, input validation) use it whatever else ships."""
    from tests.dataplane_helpers import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-dp-model"))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model when it is present, else a tiny random checkpoint with a char tokenizer."""
    from common.config import DEFAULT_MODEL_DIR
    from tests.dataplane_helpers import save_tiny_checkpoint

    if (DEFAULT_MODEL_DIR / "config.json").is_file() and (
        DEFAULT_MODEL_DIR / "tokenizer.json"
    ).is_file():
        return DEFAULT_MODEL_DIR
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-model"))

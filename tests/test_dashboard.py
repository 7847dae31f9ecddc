"""The /dashboard page in a real headless Chromium (Debian's, driven by Playwright): it loads,
goes live, lists the worker, and shows a request submitted through its form progressing step by
step to done, with no console errors. Screenshots land in tests/artifacts/ (gitignored)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from common.config import DEFAULT_MODEL_DIR
from common.redis_server import RedisServer
from tests.dataplane_helpers import REPO
from tests.ops_helpers import save_letters_checkpoint, watched_stack
from tests.stack import Stack

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = REPO / "tests" / "artifacts"
TIMEOUT_MS = 60_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium binary")


@pytest.fixture(scope="module")
def answer_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model when present, else a tiny random model that answers in letters (so the
    canvas has text to show, not only end-of-text padding)."""
    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        return DEFAULT_MODEL_DIR
    return save_letters_checkpoint(tmp_path_factory.mktemp("letters-model"))


@pytest.fixture(scope="module")
def stack(
    redis_server: RedisServer, answer_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("dash-logs")
    with watched_stack(redis_server.url, answer_model_dir, log_dir, 0.15) as s:
        yield s


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[Any]:
    """A page in a fresh Chromium profile; console errors and page errors are collected."""
    with sync_api.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 1100},
        )  # fmt: skip
        try:
            pg = ctx.new_page()
            pg.set_default_timeout(TIMEOUT_MS)
            pg.errors = []
            pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            yield pg
        finally:
            ctx.close()


def _submit_through_form(page: Any) -> str:
    page.fill("#prompt", "abc")
    page.fill("#max-tokens", "32")
    page.fill("#block-length", "8")
    page.select_option("#slo-class", "batch")
    page.click("#submit button[type=submit]")
    msg = page.wait_for_selector("#submit-msg:has-text('submitted')")
    return str(msg.text_content()).split()[-1]


def test_dashboard_follows_a_request_to_done(stack: Stack, page: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{stack.url}/dashboard")
    page.wait_for_selector("#conn.ok")
    page.wait_for_selector("#workers tbody tr:has-text('default')")
    page.wait_for_selector("#classes tbody tr:has-text('interactive')")

    req_id = _submit_through_form(page)
    card = f'#inflight .req[data-id="{req_id}"]'
    page.wait_for_function(  # part of the canvas committed, part still masked
        """id => window.dilaTrace.some(t => t.id === id && t.status === "running"
                  && t.tokens_committed >= 8 && (t.partial || "").includes("_"))""",
        arg=req_id,
    )
    page.screenshot(path=str(ARTIFACTS / "dashboard-running.png"), full_page=True)
    page.wait_for_selector(f'{card}[data-status="done"]')
    page.wait_for_selector(f'#recent .req[data-id="{req_id}"]')
    page.screenshot(path=str(ARTIFACTS / "dashboard-done.png"), full_page=True)

    trace = page.evaluate(f"window.dilaTrace.filter(t => t.id === {req_id!r})")
    running = [t for t in trace if t["status"] == "running"]
    assert len({t["tokens_committed"] for t in running}) >= 2, trace  # step by step
    assert any("_" in (t["partial"] or "") for t in running), trace  # masked cells seen
    assert page.locator(f"{card} .canvas span.mask").count() == 0
    final = httpx.get(f"{stack.url}/v1/requests/{req_id}", timeout=5).json()
    assert final["status"] == "done" and final["progress"]["tokens_committed"] == 32
    assert page.errors == [], page.errors
    assert (ARTIFACTS / "dashboard-done.png").stat().st_size > 10_000

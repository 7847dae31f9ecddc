"""Deployment files stay true to the code: `docker-compose config` accepts the compose file, and
every command, flag, port, environment variable, file and metric the deployment names exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from common.cluster_view import Raw, build_view
from common.config import Settings
from common.outcomes import outcome
from dilaserve.cli import COMMANDS, build_parser
from gateway.metrics import Metrics

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
DEPLOY = REPO / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("Dockerfile.*"))
TEST_ENV = {"REDIS_PASSWORD": "ci-secret"}
ALL_PROFILES = ("gpu", "cpu", "monitoring")
GATEWAY_PORT = 8000
# variables our images set that are not DiLaServe settings, and why
FOREIGN_ENV = {
    "OMP_NUM_THREADS": "torch's CPU threads",
    "PYTHONDONTWRITEBYTECODE": "python", "PYTHONUNBUFFERED": "python",
    "PIP_NO_CACHE_DIR": "pip", "PIP_DISABLE_PIP_VERSION_CHECK": "pip",
    "VIRTUAL_ENV": "the CUDA image's venv", "PATH": "the CUDA image's venv",
}  # fmt: skip
INTERP_RE = re.compile(r"\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}")


def _interpolate(value: Any) -> Any:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` with TEST_ENV, recursively."""
    if isinstance(value, str):
        return INTERP_RE.sub(lambda m: TEST_ENV.get(m.group(1), m.group(3) or ""), value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


def _services() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(COMPOSE.read_text())  # resolves the anchors and merge keys
    return {name: _interpolate(svc) for name, svc in doc["services"].items()}


def _ours() -> dict[str, dict[str, Any]]:
    """Services that run our image (built from deploy/docker)."""
    return {n: s for n, s in _services().items() if "build" in s}


# ---- docker-compose itself ----


def _compose_cmd() -> list[str] | None:
    found = shutil.which("docker-compose") or next(
        (p for p in ("/usr/bin/docker-compose", "/usr/local/bin/docker-compose")
         if Path(p).exists()), None,
    )  # fmt: skip
    if found:
        return [found]
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True)
    return [docker, "compose"] if docker and plugin and plugin.returncode == 0 else None


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = _compose_cmd()
    if cmd is None:
        pytest.skip("no docker-compose binary (apt-get install docker-compose)")
    profiles = [x for p in ALL_PROFILES for x in ("--profile", p)]
    full_env = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD",)}
    return subprocess.run(
        [*cmd, "-f", str(COMPOSE), *profiles, *args], env={**full_env, **env},
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_compose_config_validates() -> None:
    out = _compose("config", env=TEST_ENV)
    assert out.returncode == 0, out.stderr
    resolved = yaml.safe_load(out.stdout)
    assert set(resolved["services"]) >= {"redis", "gateway", "planner", "worker-gpu0",
                                         "worker-cpu", "prometheus", "grafana"}  # fmt: skip
    assert "redis://:ci-secret@redis:6379/0" in out.stdout


def test_compose_requires_redis_password() -> None:
    out = _compose("config", "-q", env={})
    assert out.returncode != 0 and "REDIS_PASSWORD" in out.stderr


# ---- what the compose file names exists in the code ----


def _check_command(cmd: list[str]) -> None:
    assert cmd[0] == "dilaserve", f"unknown command {cmd}"
    assert cmd[1] in COMMANDS, f"no `dilaserve {cmd[1]}` command"
    build_parser(cmd[1:]).parse_args(cmd[1:])  # an unknown flag exits with SystemExit(2)


def test_every_command_and_flag_exists() -> None:
    for name, svc in _ours().items():
        if svc["command"][0] != "celery":
            _check_command(svc["command"])
        assert (REPO / svc["build"]["dockerfile"]).is_file(), name


def test_planner_celery_app_exists() -> None:
    import importlib

    from celery import Celery

    (cmd,) = [s["command"] for s in _ours().values() if s["command"][0] == "celery"]
    module = importlib.import_module(cmd[cmd.index("-A") + 1])
    assert isinstance(getattr(module, "app", None), Celery), f"no Celery `app` in {module}"


def _check_env(names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("DILA_") or key == "REDIS_URL":
            monkeypatch.delenv(key)
    for key, value in names.items():
        if key in FOREIGN_ENV:
            continue
        assert key == "REDIS_URL" or key.startswith("DILA_"), f"unknown variable {key}"
        if key.startswith("DILA_"):
            section, _, fld = key[len("DILA_") :].lower().partition("__")
            assert section in Settings.model_fields, f"{key}: no settings section {section}"
            model = Settings.model_fields[section].annotation
            assert fld in model.model_fields, f"{key}: {section} has no field {fld}"  # type: ignore[union-attr]
        monkeypatch.setenv(key, value)
    Settings()  # every value parses and validates


def test_every_env_var_exists_in_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for svc in _ours().values():
        _check_env({k: str(v) for k, v in svc["environment"].items()}, monkeypatch)
    for dockerfile in DOCKERFILES:
        env = dict(re.findall(r"^ENV (DILA_[A-Z0-9_]+)=(\S+)", dockerfile.read_text(), re.M))
        _check_env(env, monkeypatch)


def test_ports_agree() -> None:
    gateway = _ours()["gateway"]
    cmd = gateway["command"]
    assert int(cmd[cmd.index("--port") + 1]) == GATEWAY_PORT
    assert any(p.endswith(f":{GATEWAY_PORT}") for p in gateway["ports"])
    assert f"127.0.0.1:{GATEWAY_PORT}/readyz" in " ".join(gateway["healthcheck"]["test"])
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"gateway:{GATEWAY_PORT}"]
    assert job["metrics_path"] == "/metrics"
    assert f"EXPOSE {GATEWAY_PORT}" in (DEPLOY / "docker" / "Dockerfile.cpu").read_text()


def test_dockerfile_commands_exist() -> None:
    for dockerfile in DOCKERFILES:
        (cmd,) = re.findall(r"^CMD (\[.*\])$", dockerfile.read_text(), re.M)
        _check_command(json.loads(cmd))


def test_mounted_files_exist() -> None:
    for name, svc in _services().items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./deploy"):
                assert (REPO / src).exists(), f"{name}: {src} missing"
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounted = [v.split(":")[1] for v in _services()["prometheus"]["volumes"]]
    assert all(rule in mounted for rule in prom["rule_files"])


# ---- the dashboard and the alerts use metrics the gateway exports ----


def _exported_names() -> set[str]:
    raw = Raw(now_ms=1_000_000.0, pools={"p"}, worker_ids={"w"}, queues={"p": (1, 999_000.0)},
              plan_changed=[("990000-0", {})],
              plan=json.dumps({"version": 3, "solve_ms": 12.0, "attainment": {"c": 0.9},
                               "pools": [{"pool_id": "p", "tp": 1, "tau": 0.9,
                                          "num_instances": 1}]}),
              workers={"w": {"pool": "p", "ts_ms": "999000", "tau": "0.9", "busy_s": "1",
                             "service_rate_rps": "2", "cost_step_median_abs_error": "0.1",
                             "cost_completion_median_abs_error": "0.2"}},
              counters={"arrivals": "1", "requeued:drain": "1", "reaped": "1"},
              buckets={990: {"c|p|done": "1", "c|p|met": "1"}})  # fmt: skip
    metrics = Metrics()
    for deadline_ms in ("1000000", "998600"):  # one met, one missed
        metrics.outcomes.observe(outcome("999000-0", {"id": "r", "status": "done"}, {
            "slo_class": "c", "pool": "p", "arrival_ms": "998000", "claimed_ms": "998500",
            "deadline_ms": deadline_ms, "steps": "4", "tokens_committed": "8", "tau_min": "0.9"}))
    metrics.http.observe("GET", "/x", 200, 0.01)
    metrics.http.rejected.labels("queue_full").inc()
    text = metrics.render(build_view(raw, ["c"])).decode()
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def _used_names() -> dict[str, set[str]]:
    sources = {"grafana": (DEPLOY / "grafana" / "dashboards" / "dilaserve.json").read_text(),
               "alerts": (DEPLOY / "prometheus" / "alerts.yml").read_text()}  # fmt: skip
    return {k: set(re.findall(r"dila:[a-z_:]+[a-z]", v)) for k, v in sources.items()}


def test_dashboard_and_alerts_use_exported_metrics() -> None:
    exported = _exported_names()
    for source, used in _used_names().items():
        assert used, source
        assert used <= exported, f"{source} uses unknown metrics: {sorted(used - exported)}"
    json.loads((DEPLOY / "grafana" / "dashboards" / "dilaserve.json").read_text())

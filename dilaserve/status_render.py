"""The cluster view (common/cluster_view.py) as rich tables, for `dilaserve status`."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def _fmt(value: Any, spec: str = "", none: str = "–") -> str:
    if value is None:
        return none
    return format(value, spec) if spec else str(value)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def plan_panel(view: dict[str, Any]) -> RenderableType:
    plan = view.get("plan")
    stamp = time.strftime("%H:%M:%S", time.localtime(view["ts_ms"] / 1000))
    if not plan:
        text = Text("no plan published (static pools)", style="dim")
    else:
        parts = [f"v{_fmt(plan.get('version'))}", f"from {plan.get('source')}",
                 f"status {plan.get('status')}", f"solve {_fmt(plan.get('solve_ms'), '.0f')} ms",
                 f"changed {_fmt(plan.get('age_s'), '.0f')} s ago"]  # fmt: skip
        shown = [x for x, key in zip(parts, ("version", "source", "status", "solve_ms", "age_s"),
                                     strict=True) if plan.get(key) is not None]  # fmt: skip
        text = Text.assemble(("plan ", "bold"), "  ".join(shown), "  ",
                             (str(plan.get("reason") or ""), "dim"))  # fmt: skip
    return Panel(text, title=f"DiLaServe cluster · {stamp}", title_align="left")


def pools_table(view: dict[str, Any]) -> Table:
    t = Table(title="pools", title_justify="left", expand=True)
    for col in ("pool", "TP", "τ", "τ floor", "queued", "head slack s", "running", "workers",
                "planned"):  # fmt: skip
        t.add_column(col, justify="left" if col == "pool" else "right")
    for p in view["pools"]:
        slack = p["oldest_slack_s"]
        style = "red" if slack is not None and slack < 0 else ""
        t.add_row(
            p["name"], _fmt(p["tp_degree"]), _fmt(p["tau"]), _fmt(p["tau_floor"]),
            str(p["queue_len"]), Text(_fmt(slack, ".1f"), style=style), str(p["num_running"]),
            str(p["num_workers"]), _fmt(p["planned_instances"]),
        )  # fmt: skip
    return t


def workers_table(view: dict[str, Any]) -> Table:
    gone = view.get("num_workers_gone", 0)
    t = Table(title=f"workers ({gone} gone)" if gone else "workers", title_justify="left",
              expand=True)  # fmt: skip
    for col in ("worker", "pool", "TP", "heartbeat s", "batch", "held", "util", "steps", "req/s",
                "τ", "claiming"):  # fmt: skip
        t.add_column(col, justify="left" if col in ("worker", "pool") else "right")
    for w in view["workers"]:
        age = w["heartbeat_age_s"]
        style = "red" if age is None or age > 3 else ""
        t.add_row(
            w["id"], w["pool"], f"{w['tp_rank']}/{w['tp_degree']}",
            Text(_fmt(age, ".1f"), style=style), str(w["batch_size"]), str(w["held"]),
            _pct(w["utilisation"]), str(w["num_steps"]), _fmt(w["service_rate_rps"], ".2f"),
            _fmt(w["tau"]),
            "yes" if w["claiming"] else Text("draining", style="yellow"),
        )  # fmt: skip
    return t


def classes_table(view: dict[str, Any]) -> Table:
    t = Table(title="SLO attainment (done by deadline / done+failed+expired)",
              title_justify="left", expand=True)  # fmt: skip
    for col in ("class", "1 min", "met/counted", "5 min", "met/counted", "ended 5 min"):
        t.add_column(col, justify="left" if col == "class" else "right")
    for cls, windows in sorted(view["classes"].items()):
        cells: list[RenderableType] = [cls]
        for w in ("60s", "300s"):
            a = windows.get(w) or {}
            ratio = a.get("attainment")
            style = "" if ratio is None or ratio >= 0.9 else "red"
            cells += [Text(_pct(ratio), style=style),
                      f"{a.get('met', 0)}/{a.get('met', 0) + a.get('missed', 0)}"]  # fmt: skip
        cells.append(str((windows.get("300s") or {}).get("finished", 0)))
        t.add_row(*cells)
    return t


def requests_table(view: dict[str, Any], limit: int = 10) -> Table:
    reqs = view.get("requests", [])
    t = Table(title=f"in flight ({len(reqs)} listed)", title_justify="left", expand=True)
    for col in ("request", "status", "class", "pool", "step", "tokens", "slack s", "canvas"):
        t.add_column(col, justify="right" if col in ("step", "tokens", "slack s") else "left",
                     overflow="ellipsis", no_wrap=True)  # fmt: skip
    for r in reqs[:limit]:
        t.add_row(
            r["id"], r["status"], r["slo_class"], r["pool"], str(r["steps"]),
            f"{r['tokens_committed']}/{r['tokens_total']}", _fmt(r["slack_s"], ".1f"),
            r["partial"][:48],
        )  # fmt: skip
    return t


def render(view: dict[str, Any], with_requests: bool = True) -> RenderableType:
    parts: list[RenderableType] = [plan_panel(view), pools_table(view), workers_table(view),
                                   classes_table(view)]  # fmt: skip
    if with_requests:
        parts.append(requests_table(view))
    return Group(*parts)

"""Prometheus metrics of the whole cluster, exported by every gateway replica at `/metrics`.

Workers and the planner publish their numbers to Redis (heartbeat hashes, the plan, the
finished stream); the gateway turns them into metrics. Three kinds, by where they come from:

- **cluster** (`ClusterCollector`): read from Redis at scrape time — queues, workers, plan,
  Redis counters, attainment windows. Every replica reports the same values: aggregate with
  `max by (...)`.
- **outcome** (`observe`): one observation per finished request, from the finished stream that
  the gateway replicas consume as one Redis consumer group, so each request is observed by exactly
  one replica: aggregate with `sum by (...)`.
- **gateway**: this replica's HTTP traffic and its 429 rejections by reason: `sum by (...)`.

Names follow vLLM's (`vllm:` → `dila:`) where the meaning is the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from common.outcomes import Outcome

LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300, 600)
HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)
STEP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
TOKENS_PER_STEP_BUCKETS = (1, 1.25, 1.5, 2, 2.5, 3, 4, 6, 8, 12, 16, 32)
TAU_BUCKETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
OUTCOME_LABELS = ("slo_class", "pool")


class OutcomeMetrics:
    """Per finished request: counts, latencies, steps, tokens per step, lowest τ."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels, r = OUTCOME_LABELS, registry
        self.finished = Counter("dila:requests_finished", "requests that ended, by status",
                                [*labels, "status"], registry=r)  # fmt: skip
        self.slo_met = Counter("dila:slo_met", "requests done by their deadline", labels,
                               registry=r)  # fmt: skip
        self.slo_missed = Counter("dila:slo_missed", "done late, failed or expired", labels,
                                  registry=r)  # fmt: skip
        self.e2e = self._hist("dila:e2e_request_latency_seconds", "arrival → end", r)
        self.queue = self._hist("dila:request_queue_time_seconds", "arrival → first claim", r)
        self.run = self._hist("dila:request_inference_time_seconds", "first claim → end", r)
        self.steps = self._hist("dila:request_denoise_steps", "denoising steps per request", r,
                                STEP_BUCKETS)  # fmt: skip
        self.tps = self._hist("dila:request_tokens_per_step", "mean tokens committed per step",
                              r, TOKENS_PER_STEP_BUCKETS)  # fmt: skip
        self.tau = self._hist("dila:request_threshold_min", "lowest τ a request's steps used",
                              r, TAU_BUCKETS)  # fmt: skip
        self.folded = Counter("dila:outcomes_folded", "finished-stream entries this replica "
                              "folded", registry=r)  # fmt: skip

    @staticmethod
    def _hist(
        name: str, doc: str, r: CollectorRegistry, buckets: tuple[float, ...] = LATENCY_BUCKETS_S
    ) -> Histogram:
        return Histogram(name, doc, OUTCOME_LABELS, buckets=buckets, registry=r)

    def observe(self, o: Outcome) -> None:
        lab = (o.slo_class, o.pool)
        self.folded.inc()
        self.finished.labels(*lab, o.status).inc()
        if o.slo_met is not None:
            (self.slo_met if o.slo_met else self.slo_missed).labels(*lab).inc()
        if o.status != "done":
            return
        for hist, value in ((self.e2e, o.e2e_s), (self.queue, o.queue_s), (self.run, o.run_s),
                            (self.tps, o.tokens_per_step), (self.tau, o.tau_min)):  # fmt: skip
            if value is not None:
                hist.labels(*lab).observe(max(0.0, value))
        if o.steps:
            self.steps.labels(*lab).observe(o.steps)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("dila:http_requests", "HTTP requests this gateway answered",
                                ["method", "route", "code"], registry=registry)  # fmt: skip
        self.duration = Histogram("dila:http_request_duration_seconds", "HTTP handling time "
                                  "(streams: until the stream ends)", ["method", "route"],
                                  buckets=HTTP_BUCKETS_S, registry=registry)  # fmt: skip
        self.rejected = Counter("dila:requests_rejected", "requests this gateway refused with "
                                "429, by reason", ["reason"], registry=registry)  # fmt: skip

    def observe(self, method: str, route: str, code: int, duration_s: float) -> None:
        self.requests.labels(method, route, str(code)).inc()
        self.duration.labels(method, route).observe(duration_s)


def _gauge(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], Any]]) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=labels)
    for values, v in rows:
        if v is not None:
            g.add_metric(values, float(v))
    return g


def _counter(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], Any]]) -> Metric:
    c = CounterMetricFamily(name, doc, labels=labels)
    for values, v in rows:
        c.add_metric(values, float(v))
    return c


class ClusterCollector(Collector):
    """Gauges and counters of the cluster view taken just before the scrape renders."""

    def __init__(self) -> None:
        self.view: dict[str, Any] | None = None

    def collect(self) -> Iterator[Metric]:
        view = self.view
        yield _gauge("dila:redis_up", "1 when this scrape could read Redis", [],
                     [([], 0 if view is None else 1)])  # fmt: skip
        if view is None:
            return
        yield from _pool_metrics(view["pools"])
        yield from _worker_metrics(view["workers"], view.get("num_workers_gone", 0))
        yield from _plan_metrics(view.get("plan"))
        yield from _counter_metrics(view.get("counters", {}))
        yield from _window_metrics(view.get("classes", {}))


def _pool_metrics(pools: list[dict[str, Any]]) -> Iterator[Metric]:
    def rows(key: str) -> list[tuple[list[str], Any]]:
        return [([p["name"]], p[key]) for p in pools]

    yield _gauge("dila:num_requests_waiting", "requests queued per pool", ["pool"],
                 rows("queue_len"))  # fmt: skip
    yield _gauge("dila:num_requests_running", "requests held by workers per pool", ["pool"],
                 rows("num_running"))  # fmt: skip
    yield _gauge("dila:queue_oldest_deadline_slack_seconds", "deadline of the queue head minus "
                 "now (negative: already late)", ["pool"], rows("oldest_slack_s"))  # fmt: skip
    yield _gauge("dila:num_workers", "live workers per pool", ["pool"], rows("num_workers"))
    yield _gauge("dila:pool_threshold", "default τ of the pool (plan, else workers)", ["pool"],
                 rows("tau"))  # fmt: skip


def _worker_metrics(workers: list[dict[str, Any]], num_gone: int) -> Iterator[Metric]:
    labels = ["worker", "pool"]

    def rows(key: str) -> list[tuple[list[str], Any]]:
        return [([w["id"], w["pool"]], w[key]) for w in workers]

    yield _gauge("dila:worker_heartbeat_age_seconds", "time since the last heartbeat", labels,
                 rows("heartbeat_age_s"))  # fmt: skip
    yield _gauge("dila:worker_batch_size", "requests in the worker's running batch", labels,
                 rows("batch_size"))  # fmt: skip
    yield _gauge("dila:worker_utilisation", "share of wall time spent stepping, since start",
                 labels, rows("utilisation"))  # fmt: skip
    yield _gauge("dila:worker_threshold", "the worker's τ", labels, rows("tau"))
    yield _gauge("dila:worker_service_rate_rps", "requests the worker finished per second, "
                 "recent window", labels, rows("service_rate_rps"))  # fmt: skip
    yield _gauge("dila:worker_step_prediction_error", "cost model: median relative error of "
                 "predicted step times", labels, rows("step_prediction_error"))  # fmt: skip
    yield _gauge("dila:worker_completion_prediction_error", "cost model: median relative error "
                 "of predicted completion times", labels,
                 rows("completion_prediction_error"))  # fmt: skip
    yield _counter("dila:worker_steps", "denoising steps run", labels, rows("num_steps"))
    yield _counter("dila:worker_busy_seconds", "wall time spent stepping (rate = utilisation)",
                   labels, rows("busy_s"))  # fmt: skip
    yield _counter("dila:worker_forward_seconds", "time inside the model forward", labels,
                   rows("forward_s"))  # fmt: skip
    yield _gauge("dila:num_workers_gone", "workers that heartbeat once and whose heartbeat "
                 "expired", [], [([], num_gone)])  # fmt: skip


def _plan_metrics(plan: dict[str, Any] | None) -> Iterator[Metric]:
    if not plan:
        return
    num = (int, float)
    version = plan.get("version")
    solve_ms = plan.get("solve_ms")
    yield _gauge("dila:plan_version", "version of the current plan", [],
                 [([], version if isinstance(version, num) else None)])  # fmt: skip
    yield _gauge("dila:plan_solve_seconds", "solve time of the current plan", [],
                 [([], solve_ms / 1000.0 if isinstance(solve_ms, num) else None)])  # fmt: skip
    yield _gauge("dila:plan_age_seconds", "time since the plan last changed", [],
                 [([], plan.get("age_s"))])  # fmt: skip
    pools = [p for p in plan.get("pools") or [] if isinstance(p, dict)]
    yield _gauge("dila:plan_pool_instances", "instances the plan gives each pool",
                 ["pool", "tp"], [([str(p.get("pool_id")), str(p.get("tp"))],
                                   p.get("num_instances")) for p in pools])  # fmt: skip
    attainment = plan.get("attainment") or {}
    yield _gauge("dila:plan_predicted_attainment", "SLO attainment the plan predicts",
                 ["slo_class"], [([c], v) for c, v in attainment.items()])  # fmt: skip


def _counter_metrics(counters: dict[str, int]) -> Iterator[Metric]:
    def by_prefix(prefix: str) -> list[tuple[list[str], Any]]:
        return [([k[len(prefix) :]], v) for k, v in counters.items() if k.startswith(prefix)]

    yield _counter("dila:requests_arrived", "requests accepted into a queue", [],
                   [([], counters.get("arrivals", 0))])  # fmt: skip
    yield _counter("dila:requests_requeued", "running requests put back on their queue",
                   ["reason"], by_prefix("requeued:"))  # fmt: skip
    yield _counter("dila:leases_reaped", "expired leases the reaper handled", [],
                   [([], counters.get("reaped", 0))])  # fmt: skip
    yield _counter("dila:stale_completions", "completions ignored: lease already lost", [],
                   [([], counters.get("stale_completions", 0))])  # fmt: skip


def _window_metrics(classes: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    rows = [([cls, w], a.get("attainment")) for cls, windows in classes.items()
            for w, a in windows.items()]  # fmt: skip
    yield _gauge("dila:slo_attainment_ratio", "share of counted requests that met their SLO "
                 "over the window", ["slo_class", "window"], rows)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.outcomes = OutcomeMetrics(self.registry)
        self.http = HttpMetrics(self.registry)
        self.cluster = ClusterCollector()
        self.registry.register(self.cluster)

    def render(self, view: dict[str, Any] | None) -> bytes:
        """The exposition text; `view` None when Redis could not be read (`dila:redis_up 0`).
        Called on the event loop with no await between setting and rendering."""
        self.cluster.view = view
        try:
            return generate_latest(self.registry)
        finally:
            self.cluster.view = None

"""Settings: the only module that reads the environment.

Every process builds one `Settings()` at its entry point and passes the parts it needs down
through constructors. Variables are `DILA_<SECTION>__<FIELD>`, e.g. `DILA_REDIS__URL`,
`DILA_WORKER__MAX_BATCH_SIZE`; a few common ones also have short aliases (`REDIS_URL`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "demo-anyorder"


class RedisCfg(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "dila"
    socket_timeout_s: float = 0.5
    # Short timeouts and no retries: a dead Redis must surface as 503 within a second.
    connect_timeout_s: float = 0.25
    max_connections: int = Field(1024, ge=1)
    result_ttl_s: int = Field(3600, ge=1, description="how long a finished request is kept")
    events_maxlen: int = Field(2000, ge=10, description="cap of each per-request event stream")


class SloClassCfg(BaseModel):
    name: str
    slo_ms: float = Field(gt=0, description="end-to-end latency SLO: deadline = arrival + slo_ms")
    tau_floor: float = Field(0.7, gt=0, le=1, description="lowest threshold a deadline may force")
    weight: float = Field(1.0, gt=0, description="value of meeting this class's SLO (planner)")
    late_action: Literal["serve", "drop"] = Field(
        "serve", description="once hopeless: serve best effort (slo_met=false) or drop (expired)"
    )


DEFAULT_SLO_CLASSES = [
    SloClassCfg(name="interactive", slo_ms=2_000, tau_floor=0.7, weight=2.0, late_action="drop"),
    SloClassCfg(name="standard", slo_ms=10_000, tau_floor=0.7),
    SloClassCfg(name="batch", slo_ms=60_000, tau_floor=0.8, weight=0.5),
]


class EngineCfg(BaseModel):
    model_dir: Path = DEFAULT_MODEL_DIR
    device: str = "cpu"
    dtype: str = "float32"
    max_batch_size: int = Field(32, ge=1)
    # 0 means "the model's max_seq_len".
    max_canvas_len: int = Field(0, ge=0)
    num_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's default")
    # testing and measured validation on CPU: steps last as long as this cost model says
    # (workers/pacing.py); None: real device time only
    pace_cost_model: Path | None = None


class SchedulerCfg(BaseModel):
    policy: Literal["fcfs-fixed", "edf-fixed", "cw-srpt", "dilaserve"] = "dilaserve"
    tau_ladder: list[float] = Field(
        [0.9, 0.85, 0.8, 0.7, 0.6, 0.5], description="highest first"
    )
    safety: float = Field(0.9, gt=0, le=1, description="plan to finish within this share of slack")
    max_batch_tokens: int = Field(0, ge=0, description="Σ canvas tokens per batch; 0 = no limit")
    pressure_hold_ms: float = Field(
        2000.0, ge=0, description="how long a deadline at risk keeps the others' τ lowered"
    )
    accuracy_budget_points: float = Field(
        1.0, ge=0,
        description="lending slack may cost at most this much accuracy (quality profile, points)",
    )  # fmt: skip
    guard_admission: bool = Field(
        True, description="admit only while every admitted request stays on time by prediction",
    )
    give_up_backlog: float = Field(
        0.5, ge=0,
        description="batches of work waiting beyond the free slots before a drop request "
        "predicted late gives way",
    )  # fmt: skip


class GatewayCfg(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = []
    model_name: str = ""  # served model name; "" → the model directory's name
    default_slo_class: str = "standard"
    default_block_length: int = Field(32, ge=1)
    max_tokens_limit: int = Field(1024, ge=1, description="largest max_tokens a client may ask")
    max_queue_len: int = Field(10_000, ge=1, description="per-pool queue bound → 429 above it")
    retry_after_s: int = Field(1, ge=1)
    wait_timeout_s: float = Field(600.0, gt=0, description="blocking OpenAI calls give up after")
    drain_grace_s: float = Field(1.0, ge=0, description="SIGTERM: /readyz is 503 this long first")
    drain_timeout_s: float = Field(10.0, ge=0, description="SIGTERM: in-flight requests finish")


class WorkerCfg(BaseModel):
    pool: str = "default"
    lease_s: float = 10.0
    heartbeat_s: float = 1.0
    worker_id: str = ""  # "" → generated at start
    tau: float = Field(0.9, gt=0, le=1, description="fixed confidence threshold (static pool)")
    max_retries: int = Field(2, ge=0, description="a request that fails more often is failed")
    drain_timeout_s: float = Field(30.0, ge=0, description="SIGTERM: hand back within this")
    claim_poll_s: float = Field(0.1, gt=0, description="fallback queue poll when no wake-up")
    reap_interval_s: float = Field(1.0, gt=0)
    plan_poll_s: float = Field(1.0, gt=0, description="a plain worker re-reads its pool's plan")
    # testing knob: sleep this long after every step, so tests can catch a request mid-flight
    debug_step_delay_s: float = Field(0.0, ge=0)


class SlotCfg(BaseModel):
    """A slot: one worker process on one device that the plan puts into TP groups."""

    node: str = Field("n0", pattern=r"^[A-Za-z0-9._-]+$", description="this machine's name")
    device: str = "cpu:0"  # the slot's device label; "cuda:N" also picks the torch device
    host: str = "127.0.0.1"  # address the group's ranks reach this node's rendezvous store at
    heartbeat_s: float = Field(1.0, gt=0)
    plan_poll_s: float = Field(0.2, gt=0, description="how often the plan is re-read")
    join_timeout_s: float = Field(20.0, gt=0, description="rendezvous: every rank within this")
    collective_timeout_s: float = Field(30.0, gt=0, description="a dead peer fails a step after")
    retry_s: float = Field(1.0, ge=0, description="pause before re-forming after a failure")


class PlannerCfg(BaseModel):
    """The planner's Celery worker + beat (planner/tasks.py) and its solve (docs/planner.md)."""

    celery_db: int = Field(1, ge=0, description="Redis db of Celery's broker and results")
    replan_period_s: float = Field(5.0, gt=0)
    watch_period_s: float = Field(1.0, gt=0, description="how often load drift is checked")
    drift_fraction: float = Field(0.25, gt=0, description="a class rate moving this much: re-plan")
    reap_period_s: float = Field(1.0, gt=0, description="expired leases are re-queued this often")
    housekeeping_period_s: float = Field(60.0, gt=0)
    window_s: int = Field(60, ge=10, description="arrival-rate window (forecast input)")
    time_limit_s: float = Field(1.0, gt=0, description="MIP time limit; on timeout the plan stays")
    routing_tolerance: float = Field(0.02, ge=0, description="ignore smaller routing moves")
    lock_ttl_s: float = Field(30.0, gt=0, description="one re-plan at a time")
    tp_degrees: list[int] = [1, 2, 4, 8]
    batch_sizes: list[int] = [1, 2, 4, 8, 16, 32]
    accuracy_budget_pts: float = Field(1.0, ge=0, description="points below τ 0.9's accuracy")
    fill_idle: bool = Field(True, description="idle GPUs join the busiest pools as headroom")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DILA_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    redis: RedisCfg = RedisCfg()
    engine: EngineCfg = EngineCfg()
    gateway: GatewayCfg = GatewayCfg()
    worker: WorkerCfg = WorkerCfg()
    slot: SlotCfg = SlotCfg()
    scheduler: SchedulerCfg = SchedulerCfg()
    planner: PlannerCfg = PlannerCfg()
    slo_classes: list[SloClassCfg] = DEFAULT_SLO_CLASSES
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "DILA_REDIS_URL")
    )

    def model_post_init(self, _ctx: object) -> None:
        # REDIS_URL is the conventional short form; it wins over the nested default.
        if self.redis_url:
            self.redis = self.redis.model_copy(update={"url": self.redis_url})

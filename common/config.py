"""Settings: the only module that reads the environment.

Every process builds one `Settings()` at its entry point and passes the parts it needs down
through constructors. Variables are `DILA_<SECTION>__<FIELD>`, e.g. `DILA_REDIS__URL`,
`DILA_WORKER__MAX_BATCH_SIZE`; a few common ones also have short aliases (`REDIS_URL`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "demo-anyorder"


class RedisCfg(BaseModel):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "dila"
    socket_timeout_s: float = 0.5


class EngineCfg(BaseModel):
    model_dir: Path = DEFAULT_MODEL_DIR
    device: str = "cpu"
    dtype: str = "float32"
    max_batch_size: int = Field(32, ge=1)
    # 0 means "the model's max_seq_len".
    max_canvas_len: int = Field(0, ge=0)
    num_threads: int = Field(0, ge=0, description="torch intra-op threads; 0 keeps torch's default")


class GatewayCfg(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: list[str] = []


class WorkerCfg(BaseModel):
    pool: str = "default"
    lease_s: float = 10.0
    heartbeat_s: float = 1.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DILA_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    redis: RedisCfg = RedisCfg()
    engine: EngineCfg = EngineCfg()
    gateway: GatewayCfg = GatewayCfg()
    worker: WorkerCfg = WorkerCfg()
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("REDIS_URL", "DILA_REDIS_URL")
    )

    def model_post_init(self, _ctx: object) -> None:
        # REDIS_URL is the conventional short form; it wins over the nested default.
        if self.redis_url:
            self.redis = self.redis.model_copy(update={"url": self.redis_url})

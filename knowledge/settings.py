"""The one settings object. Nothing else in the project reads the environment."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration; env prefix ``SOPAGENT_``. Defaults give the embedded setup."""

    model_config = SettingsConfigDict(env_prefix="SOPAGENT_", extra="ignore")

    home: Path = Field(default=Path(".sopagent"), description="Directory for the embedded stores.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home.")
    channel: str = Field(default="sandbox", description="Outbound channel: sandbox or wecom.")
    library_dir: Path | None = Field(default=None, description="SOP library; default the bundled one.")
    shop_timezone: str = "Asia/Shanghai"

    daily_marketing_cap: int = Field(default=1, ge=1, description="Marketing pushes per customer per day.")
    min_marketing_interval_hours: float = Field(default=4.0, ge=0)
    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    silent_after_days: int = Field(default=14, ge=1, description="Days without contact before 'silent'.")

    sqlite_cache_mib: int = Field(default=64, ge=2, description="SQLite page cache per connection, MiB.")
    worker_batch: int = Field(default=2000, ge=1, description="Due rows or outbox rows per transaction.")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'sopagent.sqlite'}"

    @property
    def checkpoint_path(self) -> Path:
        return self.home / "checkpoints.sqlite"

    @property
    def sandbox_path(self) -> Path:
        return self.home / "sandbox.sqlite"

    @property
    def library_path(self) -> Path:
        return self.library_dir or Path(__file__).resolve().parent.parent / "sop_graphs" / "library"


@lru_cache
def get_settings() -> Settings:
    """Cached settings read from the environment once."""
    return Settings()

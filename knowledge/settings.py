"""The one settings object. Nothing else in the project reads the environment."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration; env prefix ``SOPAGENT_``. Defaults give the embedded setup."""

    model_config = SettingsConfigDict(env_prefix="SOPAGENT_", extra="ignore", populate_by_name=True)

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
    burst_window_seconds: float = Field(default=2.0, ge=0, description="Messages this close form one turn.")

    brain: Literal["offline", "llm"] = Field(default="offline", description="offline (default) or llm.")
    embedder: Literal["e5", "hash"] = Field(default="e5", description="e5 (bundled model) or hash (tests).")
    llm_model: str = Field(default="gpt-4o-mini", description="Model name at the OpenAI-compatible endpoint.")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices(
        "OPENAI_API_KEY", "SOPAGENT_OPENAI_API_KEY", "openai_api_key"))
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices(
        "OPENAI_BASE_URL", "SOPAGENT_OPENAI_BASE_URL", "openai_base_url"))
    llm_timeout_seconds: float = Field(default=20.0, gt=0)
    llm_max_attempts: int = Field(default=3, ge=1, description="Attempts per LLM call (429/5xx/timeouts/bad output).")

    worker_batch: int = Field(default=2000, ge=1, description="Due rows or outbox rows per transaction.")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'sopagent.sqlite'}"

    @property
    def checkpoint_path(self) -> Path:
        return self.home / "checkpoints.sqlite"

    @property
    def chroma_path(self) -> Path:
        return self.home / "chroma"

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

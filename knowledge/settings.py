"""The one settings object. Nothing else in the project reads the environment."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration; env prefix ``SOPAGENT_``. Defaults give the embedded setup."""

    model_config = SettingsConfigDict(env_prefix="SOPAGENT_", extra="ignore", populate_by_name=True)

    home: Path = Field(default=Path(".sopagent"), description="Directory for the embedded stores.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home.")
    chroma_url: str | None = Field(default=None, max_length=500, description=(
        "a Chroma server (chroma run) shared by every API and worker process, as http(s)://host:port, e.g. "
        "http://127.0.0.1:8001; unset = the embedded Chroma in home (one process)"))
    channel: Literal["auto", "sandbox", "wecom"] = Field(
        default="auto", description="Outbound channel; auto = wecom when WeCom credentials are set, else sandbox.")
    library_dir: Path | None = Field(default=None, description="SOP library; default the shop's library/ or the "
                                     "bundled one.")
    shop_dir: Path | None = Field(default=None, description="Demo shop data (files + shop.yaml manifest) loaded "
                                  "into an empty catalogue; default the bundled skincare shop.")
    shop_timezone: str = "Asia/Shanghai"
    console_dir: Path | None = Field(default=None, description="The operator console's built files; default the "
                                     "bundle shipped inside the package (api/console_dist).")

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
    llm_reply_max_chars: int = Field(default=1000, ge=1, description="A model reply longer than this is refused "
                                     "as malformed (retried, then the offline brain answers).")
    llm_breaker_failures: int = Field(default=3, ge=1, description="Consecutive LLM failures that open the circuit: "
                                      "turns then use the offline brain without calling the endpoint.")
    llm_breaker_cooldown_seconds: float = Field(default=30.0, gt=0, description="How long an open circuit waits "
                                                "(on the injected clock) before one probe call is allowed.")
    llm_budget_min: float = Field(default=1.0, ge=0, description="Smallest budget (yuan) the model may extract.")
    llm_budget_max: float = Field(default=100_000.0, gt=0, description="Largest budget (yuan) the model may extract.")

    wecom_corp_id: str | None = Field(default=None, description="CorpID; also the callback receiveid.")
    wecom_token: SecretStr | None = Field(default=None, description="Callback Token of the app.")
    wecom_aes_key: SecretStr | None = Field(default=None, description="Callback EncodingAESKey (43 chars).")
    wecom_secret: SecretStr | None = Field(default=None, description="Secret of the self-built app.")
    wecom_contact_secret: SecretStr | None = Field(
        default=None, description="客户联系 secret (externalcontact APIs); default the app secret.")
    wecom_kf_secret: SecretStr | None = Field(default=None, description="微信客服 secret; default the app secret.")
    wecom_agent_id: int | None = Field(default=None, description="AgentID for employee reminders (message/send).")
    wecom_api_base: str = Field(default="https://qyapi.weixin.qq.com", description="Every WeCom API call goes here.")
    wecom_timeout_seconds: float = Field(default=10.0, gt=0)
    callback_max_bytes: int = Field(default=64 * 1024, ge=1024, description="Larger callback bodies are refused.")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, description="Larger request bodies are refused "
                                "with 413 on every route (counted while streaming, chunked bodies too).")
    knowledge_max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, description="The same limit for "
                                          "POST /api/knowledge/{kind} (a whole export file in one body).")
    max_json_depth: int = Field(default=32, ge=2, le=128, description="Deeper nested JSON bodies are refused "
                                "with 422.")
    callback_max_skew_seconds: int = Field(default=300, ge=1, description="Older/newer timestamps are refused.")
    member_task_expiry_hours: float = Field(default=24.0, gt=0, description="Unsent mass-send tasks are cancelled.")
    operator_token: SecretStr | None = Field(default=None, description="Bearer token of the operator API.")
    order_webhook_secret: SecretStr | None = Field(default=None, description="Signs the shop's order events "
                                                   "(POST /api/events/orders, HMAC-SHA256); unset = the webhook is off.")
    order_webhook_tolerance_seconds: int = Field(default=300, ge=1, description="How far a signed timestamp may "
                                                 "be from now (replays of old deliveries are refused).")
    youzan_client_id: str | None = Field(default=None, description="client_id of the 有赞云 app whose push "
                                         "messages arrive at POST /api/events/youzan; unset = that endpoint is off.")
    youzan_client_secret: SecretStr | None = Field(default=None, description="client_secret of that app: 有赞 "
                                                   "signs each push with it (MD5); unset = the endpoint is off.")
    chat_secret: SecretStr | None = Field(default=None, description="Signs web chat sessions; random per process "
                                                                    "if unset (sessions then end on restart).")
    chat_wait_seconds: float = Field(default=15.0, gt=0, description="How long POST /chat waits for replies.")
    chat_rate_per_session: int = Field(default=20, ge=1, le=10_000, description=(
        "Web chat messages one session may send per minute (429 beyond)."))
    chat_rate_per_address: int = Field(default=60, ge=1, le=100_000, description=(
        "Web chat messages one client address may send per minute, all its sessions together (429 beyond)."))
    serve_worker: bool = Field(default=True, description="serve also runs the worker in-process (single node).")
    turn_concurrency: int = Field(default=32, ge=1, le=512, description=(
        "customers whose model calls are made at once, before the turns' write transactions (LLM brain only)"))
    pump_pass_seconds: float = Field(default=0.25, gt=0, le=60, description=(
        "a pump pass stops writing turns after this long and lets operator actions in (the pump is never held "
        "by a model call: drafts are made off the write path and wake the pump when done)"))
    pump_lease_seconds: float = Field(default=30.0, gt=0, le=3600, description=(
        "one pump per database: the lease a pump renews every pass; another pump takes over this long after "
        "the holder stopped renewing"))
    library_poll_seconds: float = Field(default=2.0, gt=0, le=600, description=(
        "how often a pump checks the database for SOPs published, paused or resumed by another process"))

    report_enabled: bool = Field(default=True, description="the pump writes yesterday's review report each day")
    report_time: str = Field(default="08:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$", description=(
        "shop-local time after which yesterday's report is made and sent to the operators"))
    report_recipients: str = Field(default="@all", max_length=2000, description=(
        "WeCom userids (joined by |) who get the report's summary as an app message"))
    public_url: str | None = Field(default=None, max_length=500, description=(
        "where operators reach this server (links in the report summary), e.g. https://ops.example.com"))

    worker_batch: int = Field(default=2000, ge=1, description="Due rows or outbox rows per transaction.")

    @field_validator("chroma_url")
    @classmethod
    def _chroma_server(cls, value: str | None) -> str | None:
        """Refuse any URL but http(s)://host:port, saying why (knowledge.vector_store); blank = unset."""
        from knowledge.vector_store import ChromaServer

        return ChromaServer.from_url(value).url if value and value.strip() else None

    @property
    def wecom_configured(self) -> bool:
        return bool(self.wecom_corp_id and self.wecom_secret)

    @property
    def use_wecom(self) -> bool:
        return self.channel == "wecom" or (self.channel == "auto" and self.wecom_configured)

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
    def shop_path(self) -> Path:
        return self.shop_dir or Path(__file__).resolve().parent / "demo_shop"

    @property
    def library_path(self) -> Path:
        if self.library_dir is not None:
            return self.library_dir
        if self.shop_dir is not None and (self.shop_dir / "library").is_dir():
            return self.shop_dir / "library"  # a shop brings its own SOPs, taxonomy, intents and persona
        return Path(__file__).resolve().parent.parent / "sop_graphs" / "library"


@lru_cache
def get_settings() -> Settings:
    """Cached settings read from the environment once."""
    return Settings()

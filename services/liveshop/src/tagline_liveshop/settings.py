"""Liveshop settings (env prefix ``TAGLINE_LIVESHOP_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tagline_platform.settings import ServiceSettings


class LiveshopSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TAGLINE_LIVESHOP_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8083, ge=0, le=65535)
    database: str = "tagline_liveshop"
    group_id: str = "tagline-liveshop"
    max_batch: int = Field(default=2_000, ge=1, description="Records per batch of the comment pipeline.")
    batch_timeout_ms: int = Field(
        default=5,
        ge=1,
        description="Longest wait for records when none are buffered (a batch is not filled).",
    )
    fetch_max_wait_ms: int = Field(
        default=10, ge=0, description="Longest wait of a Kafka fetch for partitions without new records."
    )
    cache_size: int = Field(default=64, ge=1, description="Sessions kept in memory per instance.")
    live_refresh_s: float = Field(
        default=1.0, gt=0, description="How often the live sessions per channel are reloaded (chat orders)."
    )
    expiry_interval_s: float = Field(default=5.0, gt=0, description="How often unpaid orders are expired.")
    points_url: str = Field(
        default="http://127.0.0.1:8090",
        description="Base URL of the LINE POINTS gateway (POST /v1/points/grants); the emulator locally.",
    )
    points_token: str | None = Field(default=None, description="Bearer token for the POINTS gateway, if any.")
    points_timeout_s: float = Field(default=5.0, gt=0)
    points_interval_s: float = Field(default=1.0, gt=0, description="How often pending grants are tried.")
    lock_stale_after_s: float = Field(
        default=10.0, gt=0, description="A session lock older than this is taken over (its holder died)."
    )
    jobs: bool = Field(default=True, description="Run the expiry and POINTS jobs here.")
    consumer_lag_interval_s: float = Field(
        default=15.0, gt=0, description="How often the consumer lag on /metrics is measured."
    )

"""Tagger settings (env prefix ``TAGLINE_TAGGER_``).

Channels come from ``TAGLINE_TAGGER_CHANNELS`` (a JSON list of channel ids) and/or
``TAGLINE_TAGGER_CHANNELS_FILE`` (a path to a file with such a list); a channel in either is served. The
tagger refuses to start without any: every API path under ``/channels/{channel}`` answers 404 for a channel
it does not serve, and its records on the member topics are dead-lettered (``tagline_tagger.pipeline``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError
from pydantic_settings import SettingsConfigDict

from tagline_platform.errors import ConfigurationError
from tagline_platform.settings import ServiceSettings
from tagline_tagger.domain.rfm import DEFAULT_THRESHOLDS, MIN_QUINTILE_POPULATION, AbsoluteThresholds

ChannelId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
_CHANNEL_LIST = TypeAdapter(list[ChannelId])


class TaggerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TAGLINE_TAGGER_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8082, ge=0, le=65535)
    database: str = "tagline_tagger"
    channels: list[ChannelId] = Field(
        default_factory=list, description="The channel ids this tagger serves (JSON list)."
    )
    channels_file: Path | None = Field(
        default=None, description="A file with a JSON list of more channel ids to serve."
    )
    group_id: str = "tagline-tagger"
    max_batch: int = Field(default=5_000, ge=1, description="Records per batch of the member pipeline.")
    batch_timeout_ms: int = Field(default=50, ge=1, description="Longest wait to fill a batch.")
    cache_size: int = Field(default=200_000, ge=0, description="Members kept in memory per instance.")
    lookup_concurrency: int = Field(default=32, ge=1, description="Member reads in flight per batch.")
    rules_refresh_s: float = Field(
        default=2.0, gt=0, description="How often every instance reloads the rules."
    )
    sweep_interval_s: float = Field(default=60.0, gt=0, description="How often expired tags are looked for.")
    coverage_refresh_s: float = Field(
        default=60.0, gt=0, description="How often the coverage gauge is updated."
    )
    rfm_interval_s: float = Field(
        default=86_400.0,
        gt=0,
        description="How often each channel's RFM model is recomputed (on demand too: .../rfm/recompute).",
    )
    rfm_min_population: int = Field(
        default=MIN_QUINTILE_POPULATION,
        ge=1,
        description="Buyers a channel needs for quintile RFM scores; below it the absolute thresholds apply.",
    )
    rfm_thresholds: AbsoluteThresholds = Field(
        default=DEFAULT_THRESHOLDS,
        description="RFM cut points below the minimum population: JSON {recency_days, frequency, monetary}, "
        "four ascending numbers each.",
    )
    reply_ttl_s: float = Field(default=25.0, gt=0, description="Auto-replies to older messages are not sent.")
    jobs: bool = Field(default=True, description="Run the scheduled jobs (sweep, coverage, RFM) here.")
    consumer_lag_interval_s: float = Field(
        default=15.0, gt=0, description="How often the consumer lag on /metrics is measured."
    )

    def load_channels(self) -> frozenset[str]:
        """The channels of ``channels`` and ``channels_file`` (empty if neither names one)."""
        channels = set(self.channels)
        if self.channels_file is not None:
            try:
                channels.update(_CHANNEL_LIST.validate_json(self.channels_file.read_bytes()))
            except (OSError, ValidationError) as exc:
                raise ConfigurationError(
                    f"cannot read the tagger's channels from {self.channels_file} (a JSON list of channel "
                    f"ids, e.g. {json.dumps(['1234567890'])}): {exc}"
                ) from exc
        return frozenset(channels)

"""Ingest settings (env prefix ``TAGLINE_INGEST_``).

Channel secrets come from ``TAGLINE_INGEST_CHANNEL_SECRETS`` (a JSON object ``{"<channel id>": "<secret>"}``)
and/or ``TAGLINE_INGEST_CHANNEL_SECRETS_FILE`` (a path to a file with the same JSON object, e.g. a Docker or
Kubernetes secret). Both may be set; the file wins for a channel present in both.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tagline_platform.errors import ConfigurationError
from tagline_platform.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TAGLINE_INGEST_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    channel_secrets: dict[str, SecretStr] = Field(default_factory=dict)
    channel_secrets_file: Path | None = None
    publish_timeout_s: float = Field(
        default=1.0, gt=0, lt=2.0, description="Deadline for Kafka to acknowledge a request's events (< 2 s)."
    )
    max_body_bytes: int = Field(default=1_048_576, gt=0, description="Larger bodies are answered with 413.")
    max_in_flight_requests: int = Field(
        default=1000, gt=0, description="Webhook requests beyond this many in progress get 503 at once."
    )

    def load_channel_secrets(self) -> dict[str, bytes]:
        """Every configured channel's secret; raises :class:`ConfigurationError` on an unreadable file."""
        secrets = {
            channel: secret.get_secret_value().encode() for channel, secret in self.channel_secrets.items()
        }
        if self.channel_secrets_file is not None:
            try:
                loaded = json.loads(self.channel_secrets_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigurationError(
                    f"cannot read channel secrets from {self.channel_secrets_file}: {exc}"
                ) from exc
            if not isinstance(loaded, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in loaded.items()
            ):
                raise ConfigurationError(
                    f'{self.channel_secrets_file} must hold a JSON object {{"<channel id>": "<secret>", ...}}'
                )
            secrets.update({channel: secret.encode() for channel, secret in loaded.items()})
        return secrets

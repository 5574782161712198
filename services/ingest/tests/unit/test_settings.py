import json
from pathlib import Path

import pytest

from tagline_ingest.settings import IngestSettings
from tagline_platform.errors import ConfigurationError


def test_secrets_from_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets_file = tmp_path / "channels.json"
    secrets_file.write_text(json.dumps({"222": "from-file", "333": "file-only"}))
    monkeypatch.setenv("TAGLINE_INGEST_CHANNEL_SECRETS", json.dumps({"111": "env-only", "222": "from-env"}))
    monkeypatch.setenv("TAGLINE_INGEST_CHANNEL_SECRETS_FILE", str(secrets_file))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k:1")
    settings = IngestSettings()
    assert settings.kafka_bootstrap_servers == "k:1"
    assert settings.load_channel_secrets() == {"111": b"env-only", "222": b"from-file", "333": b"file-only"}
    assert "env-only" not in repr(settings), "secrets are never printed"


@pytest.mark.parametrize("content", ["not json", '["a"]', '{"1": 5}'])
def test_bad_secrets_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    secrets_file = tmp_path / "channels.json"
    secrets_file.write_text(content)
    with pytest.raises(ConfigurationError, match=r"channels\.json"):
        IngestSettings(channel_secrets_file=secrets_file).load_channel_secrets()


def test_publish_deadline_must_stay_under_lines_two_seconds() -> None:
    with pytest.raises(ValueError, match="publish_timeout_s"):
        IngestSettings(publish_timeout_s=2.5)

from pathlib import Path

import pytest

from tagline_platform.errors import ConfigurationError
from tagline_tagger.settings import TaggerSettings


def test_channels_come_from_the_variable_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = tmp_path / "channels.json"
    listed.write_text('["2000000002", "1234567890"]', encoding="utf-8")
    monkeypatch.setenv("TAGLINE_TAGGER_CHANNELS", '["1234567890", " 2000000001 "]')
    monkeypatch.setenv("TAGLINE_TAGGER_CHANNELS_FILE", str(listed))

    assert TaggerSettings().load_channels() == {"1234567890", "2000000001", "2000000002"}


def test_no_channel_configured_is_an_empty_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAGLINE_TAGGER_CHANNELS", raising=False)
    monkeypatch.delenv("TAGLINE_TAGGER_CHANNELS_FILE", raising=False)
    assert TaggerSettings().load_channels() == frozenset()


@pytest.mark.parametrize("content", ['{"1234567890": "secret"}', '["1234567890", ""]', "not json"])
def test_a_channels_file_that_is_not_a_list_of_ids_is_a_configuration_error(
    tmp_path: Path, content: str
) -> None:
    listed = tmp_path / "channels.json"
    listed.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=f"cannot read the tagger's channels from {listed}"):
        TaggerSettings(channels_file=listed).load_channels()
    with pytest.raises(ConfigurationError, match="cannot read"):
        TaggerSettings(channels_file=tmp_path / "missing.json").load_channels()

"""The file-driven clock offset that lets end-to-end tests move a service process through days."""

from datetime import timedelta
from pathlib import Path

import pytest

from tagline_platform.tasks import offset_clock, utc_now


def test_no_file_or_an_empty_file_is_the_real_clock(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    clock = offset_clock(path)
    assert abs(clock() - utc_now()) < timedelta(seconds=1)
    path.write_text("  \n")
    assert abs(clock() - utc_now()) < timedelta(seconds=1)


def test_the_offset_is_read_on_every_call(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    clock = offset_clock(path)
    path.write_text("86400")
    assert abs(clock() - (utc_now() + timedelta(days=1))) < timedelta(seconds=1)
    path.write_text("-3600.5\n")
    assert abs(clock() - (utc_now() - timedelta(hours=1, milliseconds=500))) < timedelta(seconds=1)


def test_garbage_in_the_file_is_an_error_not_a_wrong_time(tmp_path: Path) -> None:
    path = tmp_path / "offset"
    path.write_text("tomorrow")
    with pytest.raises(ValueError, match="could not convert"):
        offset_clock(path)()

from datetime import UTC, datetime

from tagline_contracts.sending import SendCategory
from tagline_sender.domain.quota import UNLIMITED, external_usage, headroom_for, month_of, required_remaining


def test_month_is_taken_in_the_channels_timezone() -> None:
    # 2026-11-30 17:00 UTC is already December 1st in Taipei.
    moment = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)
    assert month_of(moment, "Asia/Taipei") == "2026-12"
    assert month_of(moment, "UTC") == "2026-11"


def test_marketing_must_leave_the_headroom() -> None:
    headroom = headroom_for(1_000, 0.05)
    assert headroom == 50
    assert required_remaining(10, SendCategory.MARKETING, headroom) == 60
    assert required_remaining(10, SendCategory.TRANSACTIONAL, headroom) == 10


def test_no_headroom_without_a_limit() -> None:
    assert headroom_for(UNLIMITED, 0.5) == 0
    assert headroom_for(10, 0.0, minimum=3) == 3


def test_external_usage_counts_only_what_we_do_not_know_about() -> None:
    assert external_usage(total_usage=120, used=100, reserved=5) == 15
    assert external_usage(total_usage=90, used=100, reserved=0) == 0  # LINE's figure lags behind ours

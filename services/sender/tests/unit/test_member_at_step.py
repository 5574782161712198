"""Which member a journey step is chosen for: the projection, or the enrolling snapshot while it lags."""

from typing import Any

from tagline_contracts.members import FollowState, MemberSnapshot
from tagline_sender.journeys import member_at_step

ENROLLED = MemberSnapshot(
    user_id="U1", follow_state=FollowState.FOLLOWED, attributes={"gender": "male"}, tags=["sticker"]
)


def _enrollment(version: int = 3) -> dict[str, Any]:
    return {"user_id": "U1", "member_version": version, "member_json": ENROLLED.model_dump_json()}


def _projected(version: int, **fields: Any) -> dict[str, Any]:
    return {"version": version, "follow_state": "followed", "attributes": {}, "tags": [], **fields}


def test_no_projection_yet_uses_the_enrolling_snapshot() -> None:
    assert member_at_step(None, _enrollment()) == ENROLLED


def test_a_projection_older_than_the_enrolling_change_is_ignored() -> None:
    assert member_at_step(_projected(2), _enrollment(3)).attributes == {"gender": "male"}


def test_a_projection_as_new_or_newer_wins() -> None:
    newer = member_at_step(
        _projected(4, attributes={"gender": "female"}, follow_state="blocked"), _enrollment(3)
    )
    assert newer.attributes == {"gender": "female"} and newer.follow_state is FollowState.BLOCKED
    same = member_at_step(_projected(3, tags=["vip"]), _enrollment(3))
    assert same.tags == ["vip"]


def test_enrollments_from_before_the_snapshot_was_kept_use_the_projection_or_nothing() -> None:
    legacy = {"user_id": "U1"}
    assert member_at_step(None, legacy) == MemberSnapshot(user_id="U1")
    assert member_at_step(_projected(1, tags=["a"]), legacy).tags == ["a"]

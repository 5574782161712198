"""A channel's member counts: each member's share, the differences a write makes, when a write is counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tagline_contracts.attributes import MemberUpdated, TagGrant, TagOrigin
from tagline_contracts.members import FollowState
from tagline_tagger.domain.counts import Share, absorbed, add, advance, difference
from tagline_tagger.domain.member import Effects, Member

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_a_followed_members_tags_and_origins_count_a_blocked_or_unknown_ones_do_not() -> None:
    followed = Share("followed", ("sale", "vip"), ("keyword", "manual"))
    assert difference(None, followed) == {
        ("members", "followed"): 1,
        ("tagged", ""): 1,
        ("by_tag", "sale"): 1,
        ("by_tag", "vip"): 1,
        ("by_origin", "keyword"): 1,
        ("by_origin", "manual"): 1,
    }
    assert difference(None, Share("blocked", ("vip",), ("manual",))) == {("members", "blocked"): 1}
    assert difference(None, Share("unknown", ("vip",), ("import",))) == {("members", "unknown"): 1}
    assert difference(None, Share("followed")) == {("members", "followed"): 1}  # untagged: not in "tagged"


def test_the_difference_of_a_change_has_no_zeros() -> None:
    before = Share("followed", ("a", "b"), ("manual",))
    after = Share("followed", ("b", "c"), ("manual",))
    assert difference(before, after) == {("by_tag", "a"): -1, ("by_tag", "c"): 1}
    assert difference(after, after) == {}
    assert difference(before, Share("blocked", ("a", "b"), ("manual",))) == {
        ("members", "followed"): -1,
        ("members", "blocked"): 1,
        ("tagged", ""): -1,
        ("by_tag", "a"): -1,
        ("by_tag", "b"): -1,
        ("by_origin", "manual"): -1,
    }
    total = difference(None, before)
    add(total, difference(before, None))
    assert total == {}


def test_a_share_is_what_the_member_document_holds_at_the_time_of_the_write() -> None:
    member = Member("C1", "U1", follow_state=FollowState.FOLLOWED)
    member.apply_update(
        MemberUpdated(
            user_id="U1",
            tags_add=[
                TagGrant(name="flash", origin=TagOrigin.IMPORT, expires_at=T0 + timedelta(minutes=5)),
                TagGrant(name="vip"),
            ],
        ),
        T0,
        Effects(),
    )
    assert Share.of(member, T0) == Share("followed", ("flash", "vip"), ("import", "manual"))
    assert Share.of(member, T0 + timedelta(minutes=5)) == Share("followed", ("vip",), ("manual",))
    assert Share.from_doc(Share.of(member, T0).to_doc()) == Share.of(member, T0)
    assert Share.from_doc(None) is None


def test_a_write_is_counted_once_the_counted_offsets_reach_every_input_applied() -> None:
    offsets = {"line_events_v1:0": 41, "member_attributes_v1:0": 7}
    assert absorbed(offsets, {"line_events_v1:0": 41, "member_attributes_v1:0": 9})
    assert not absorbed(offsets, {"line_events_v1:0": 40, "member_attributes_v1:0": 9})
    assert not absorbed(offsets, {"line_events_v1:0": 41})  # a partition never counted
    assert absorbed({}, {})
    through = {"line_events_v1:0": 41}
    advance(through, [("line_events_v1:0", 30), ("member_attributes_v1:0", 7)])
    assert through == {"line_events_v1:0": 41, "member_attributes_v1:0": 7}  # never back

"""The query shapes the sender's stores build: what the server can push down to an index."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tagline_contracts.segments import SegmentFilter, to_mongo_query
from tagline_contracts.sending import SegmentTarget
from tagline_sender.adapters.journeys import due_slot
from tagline_sender.adapters.mongo import segment_filter

NOW = datetime(2026, 12, 1, 4, 0, 30, tzinfo=UTC)


def _filter(segment: dict[str, object]) -> dict[str, object]:
    parsed: SegmentFilter = SegmentTarget.model_validate({"filter": segment}).filter
    return segment_filter("C1", to_mongo_query(parsed, now=NOW, today=date(2026, 12, 1)))


def test_a_one_tag_segment_is_selected_by_top_level_equalities_and_keeps_its_query() -> None:
    full = _filter({"op": "tags", "any": ["vip"]})
    assert full == {
        "channel_id": "C1",
        "follow_state": "followed",
        "tags": "vip",
        "$and": [{"tags": {"$in": ["vip"]}}],
    }


def test_only_what_every_match_satisfies_is_hoisted() -> None:
    # any of two tags: no single tag is implied
    assert "tags" not in _filter({"op": "tags", "any": ["vip", "gold"]})
    # all of two: the first is implied
    assert _filter({"op": "tags", "all": ["vip", "gold"]})["tags"] == "vip"
    both = _filter(
        {
            "op": "and",
            "conditions": [
                {"op": "tags", "any": ["vip"]},
                {"op": "attribute", "key": "gender", "equals": "female"},
            ],
        }
    )
    assert both["tags"] == "vip"
    assert not any("." in key for key in both)  # attributes are dotted paths: not pushed down
    either = _filter(
        {"op": "or", "conditions": [{"op": "tags", "any": ["vip"]}, {"op": "tags", "any": ["x"]}]}
    )
    assert set(either) == {"channel_id", "follow_state", "$and"}
    negated = _filter({"op": "not", "condition": {"op": "tags", "any": ["vip"]}})
    assert "tags" not in negated


def test_the_segment_cannot_widen_the_followed_members() -> None:
    blocked = _filter({"op": "follow", "state": "blocked"})
    assert blocked["follow_state"] == "followed"  # and the segment's own condition, under $and, selects none
    assert blocked["$and"] == [{"follow_state": {"$eq": "blocked"}}]


def test_a_due_slot_is_the_minute_it_is_due_in_never_one_before_it_was_written() -> None:
    assert due_slot(datetime(2026, 12, 2, 2, 0, 59, tzinfo=UTC), NOW) == "2026-12-02T02:00"
    assert due_slot(datetime(2026, 11, 1, tzinfo=UTC), NOW) == "2026-12-01T04:00"

"""The member model without servers: follow state in time order, once-only inputs, tags, orders, RFM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tagline_contracts.attributes import MemberUpdated, RfmScored, TagGrant, TagOrigin
from tagline_contracts.members import ChangeKind, FollowState
from tagline_contracts.orders import OrderEvent, OrderEventKind
from tagline_tagger.adapters.mongo import member_from_doc, member_to_doc
from tagline_tagger.domain.activity import Activity, ActivityKind
from tagline_tagger.domain.member import SEEN_IDS, Effects, Member
from tagline_tagger.domain.rfm import fit
from tagline_tagger.domain.rules import Rule, RuleSet

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
CHANNEL = "C1"


def rule(rule_id: str, tag: str, condition: dict[str, Any], **extra: Any) -> Rule:
    return Rule.model_validate(
        {
            "id": rule_id,
            "channel_id": CHANNEL,
            "version": 1,
            "created_at": T0,
            "updated_at": T0,
            "name": tag,
            "tag": tag,
            "condition": condition,
            **extra,
        }
    )


NO_RULES = RuleSet.empty()


def act(kind: ActivityKind, at: datetime, event_id: str = "e", **fields: Any) -> Activity:
    return Activity(kind=kind, event_id=event_id, at=at, **fields)


def test_follow_then_older_unfollow_keeps_followed() -> None:
    member, effects = Member(CHANNEL, "U1"), Effects()
    member.apply_activity(act(ActivityKind.FOLLOW, T0), NO_RULES, effects)
    member.apply_activity(act(ActivityKind.UNFOLLOW, T0 - timedelta(minutes=1)), NO_RULES, effects)
    assert member.follow_state is FollowState.FOLLOWED
    assert member.blocked_at == T0 - timedelta(minutes=1)
    assert effects.changes == [ChangeKind.FOLLOWED, ChangeKind.INTERACTED]


def test_block_then_unblock() -> None:
    member = Member(CHANNEL, "U1")
    member.apply_activity(act(ActivityKind.FOLLOW, T0), NO_RULES, Effects())
    blocked = Effects()
    member.apply_activity(act(ActivityKind.UNFOLLOW, T0 + timedelta(days=1)), NO_RULES, blocked)
    assert member.snapshot(T0).follow_state is FollowState.BLOCKED
    assert blocked.changes == [ChangeKind.BLOCKED]  # blocking is not an interaction
    back = Effects()
    member.apply_activity(act(ActivityKind.FOLLOW, T0 + timedelta(days=2), unblocked=True), NO_RULES, back)
    assert member.follow_state is FollowState.FOLLOWED
    assert ChangeKind.UNBLOCKED in back.changes
    assert member.follow_count == 2
    assert (member.first_followed_at, member.last_followed_at) == (T0, T0 + timedelta(days=2))


@given(st.permutations(list(range(6))))
def test_follow_state_is_that_of_the_newest_event_in_any_arrival_order(order: list[int]) -> None:
    # events alternate follow/unfollow one minute apart; the newest (index 5) is an unfollow
    kinds = [ActivityKind.FOLLOW if i % 2 == 0 else ActivityKind.UNFOLLOW for i in range(6)]
    member = Member(CHANNEL, "U1")
    for i in order:
        member.apply_activity(act(kinds[i], T0 + timedelta(minutes=i), f"e{i}"), NO_RULES, Effects())
    assert member.follow_state is FollowState.BLOCKED
    assert member.follow_count == 3
    assert member.last_followed_at == T0 + timedelta(minutes=4)


def test_seen_ids_are_bounded() -> None:
    member = Member(CHANNEL, "U1")
    for i in range(SEEN_IDS + 10):
        member.mark_seen(f"e{i}")
    assert len(member.seen) == SEEN_IDS
    assert member.has_seen(f"e{SEEN_IDS + 9}")
    assert not member.has_seen("e0")


def test_keyword_cooldown_and_tag_counts() -> None:
    rules = RuleSet.compile(
        [
            rule(
                "R1",
                "coupon",
                {
                    "kind": "keyword",
                    "match": "contains",
                    "patterns": ["券"],
                    "auto_reply": [{"type": "text", "text": "hi"}],
                },
                cooldown_s=600,
            )
        ]
    )
    member, effects = Member(CHANNEL, "U1"), Effects()
    text = {"message_type": "text", "text": "優惠券", "reply_token": "tok"}
    member.apply_activity(act(ActivityKind.MESSAGE, T0, "e1", **text), rules, effects)
    member.apply_activity(act(ActivityKind.MESSAGE, T0 + timedelta(minutes=5), "e2", **text), rules, effects)
    member.apply_activity(act(ActivityKind.MESSAGE, T0 + timedelta(minutes=11), "e3", **text), rules, effects)
    record = member.tags["coupon"]
    assert record.count == 2  # the one inside the cooldown did not count
    assert (record.first_at, record.last_at) == (T0, T0 + timedelta(minutes=11))
    assert record.origin is TagOrigin.KEYWORD
    assert [r.event_id for r in effects.replies] == ["e1", "e3"]
    assert effects.tags_added == ["coupon"]


def test_no_auto_reply_in_standby_or_without_token() -> None:
    rules = RuleSet.compile(
        [
            rule(
                "R1",
                "hi",
                {
                    "kind": "keyword",
                    "match": "exact",
                    "patterns": ["hi"],
                    "auto_reply": [{"type": "text", "text": "hello"}],
                },
            )
        ]
    )
    member, effects = Member(CHANNEL, "U1"), Effects()
    member.apply_activity(
        act(ActivityKind.MESSAGE, T0, message_type="text", text="hi", reply_token="t", active=False),
        rules,
        effects,
    )
    member.apply_activity(act(ActivityKind.MESSAGE, T0, message_type="text", text="HI"), rules, effects)
    assert effects.replies == []
    assert member.tags["hi"].count == 2


def test_tag_expiry_permanent_grant_wins_and_expired_tags_are_removed() -> None:
    member, effects = Member(CHANNEL, "U1"), Effects()
    soon = T0 + timedelta(hours=1)
    member.apply_update(
        MemberUpdated(
            user_id="U1", tags_add=[TagGrant(name="a", expires_at=soon), TagGrant(name="b", expires_at=soon)]
        ),
        T0,
        effects,
    )
    member.apply_update(MemberUpdated(user_id="U1", tags_add=[TagGrant(name="b")]), T0, effects)
    later = Effects()
    member.expire_tags(soon + timedelta(seconds=1), later)
    assert set(member.tags) == {"b"}
    assert later.tags_removed == ["a"]
    assert later.changes == [ChangeKind.UNTAGGED]


def test_attributes_set_unset_and_unchanged() -> None:
    member, effects = Member(CHANNEL, "U1"), Effects()
    member.apply_update(MemberUpdated(user_id="U1", attributes={"gender": "male", "os": "ios"}), T0, effects)
    assert effects.changes == [ChangeKind.ATTRIBUTES_CHANGED]
    same = Effects()
    member.apply_update(MemberUpdated(user_id="U1", attributes={"gender": "male"}), T0, same)
    assert not same
    gone = Effects()
    member.apply_update(MemberUpdated(user_id="U1", attributes={"os": None}), T0, gone)
    assert member.attributes == {"gender": "male"}
    assert gone.changes == [ChangeKind.ATTRIBUTES_CHANGED]


def order(
    kind: OrderEventKind, order_id: str, amount: float, at: datetime, session: str | None = None
) -> OrderEvent:
    return OrderEvent(
        kind=kind,
        order_id=order_id,
        user_id="U1",
        session_id=session,
        amount=amount,
        amount_paid=amount,
        placed_at=at,
    )


def test_orders_count_once_returns_take_back_and_spend_rules() -> None:
    rules = RuleSet.compile(
        [
            rule("R1", "buyer", {"kind": "purchase"}),
            rule("R2", "live", {"kind": "live_buyer"}),
            rule("R3", "big", {"kind": "total_spend", "at_least": 1000}),
        ]
    )
    member, effects = Member(CHANNEL, "U1"), Effects()
    member.apply_order(order(OrderEventKind.PLACED, "O1", 700, T0, "S1"), "e1", rules, None, effects)
    member.apply_order(order(OrderEventKind.PAID, "O1", 700, T0), "e2", rules, None, effects)
    member.apply_order(
        order(OrderEventKind.PAID, "O1", 700, T0), "e3", rules, None, effects
    )  # same order again
    assert (member.rfm.orders, member.rfm.monetary) == (1, 700)
    assert set(member.tags) == {"buyer", "live"}
    member.apply_order(
        order(OrderEventKind.PAID, "O2", 400, T0 + timedelta(days=1)), "e4", rules, None, effects
    )
    assert "big" in member.tags
    assert member.rfm.last_order_at == T0 + timedelta(days=1)
    member.apply_order(order(OrderEventKind.RETURNED, "O2", 400, T0), "e5", rules, None, effects)
    assert (member.rfm.orders, member.rfm.monetary) == (1, 700)


def test_monetary_is_what_was_paid_for_the_goods_without_shipping() -> None:
    """The basis LINE POINTS use too: amount_paid (discounts already off) less the shipping it includes."""
    rules = RuleSet.compile([rule("R3", "big", {"kind": "total_spend", "at_least": 1000})])
    member, effects = Member(CHANNEL, "U1"), Effects()
    # goods 1,000 at list price, a 100 coupon, 60 shipping: paid 960, of which 900 for the goods
    paid = OrderEvent(
        kind=OrderEventKind.PAID,
        order_id="O1",
        user_id="U1",
        amount=1_000,
        amount_paid=960,
        shipping_fee=60,
        placed_at=T0,
    )
    member.apply_order(paid, "e1", rules, None, effects)
    assert member.rfm.monetary == 900
    assert "big" not in member.tags  # 900 spent, not 960 or 1,000
    member.apply_order(paid.model_copy(update={"kind": OrderEventKind.RETURNED}), "e2", rules, None, effects)
    assert (member.rfm.orders, member.rfm.monetary) == (0, 0)
    # a producer that says nothing about the payment: the goods' amount
    unpaid = paid.model_copy(update={"order_id": "O2", "amount_paid": None, "shipping_fee": 0})
    member.apply_order(unpaid, "e3", rules, None, effects)
    assert member.rfm.monetary == 1_000


def test_orders_are_scored_with_the_current_model_and_older_scores_never_win() -> None:
    model = fit([1.0, 100.0, 300.0, 500.0, 700.0], [5, 3, 2, 1, 1], [5000.0, 900.0, 400.0, 100.0, 50.0], T0)
    member, effects = Member(CHANNEL, "U1"), Effects()
    member.apply_order(order(OrderEventKind.PAID, "O1", 6000, T0), "e1", NO_RULES, model, effects)
    assert member.rfm_segment is not None
    assert member.rfm.recency_score == 5
    assert ChangeKind.RFM_CHANGED in effects.changes
    newer = RfmScored(
        user_id="U1",
        recency=1,
        frequency=1,
        monetary=1,
        segment="Lost",
        model_id="m2",
        computed_at=T0 + timedelta(days=1),
    )
    member.apply_rfm(newer, Effects())
    older = RfmScored(
        user_id="U1",
        recency=5,
        frequency=5,
        monetary=5,
        segment="Champions",
        model_id="m0",
        computed_at=T0 - timedelta(days=1),
    )
    member.apply_rfm(older, Effects())
    assert member.rfm_segment == "Lost"


def test_document_roundtrip_keeps_everything() -> None:
    member = Member(CHANNEL, "U1", created_at=T0)
    member.apply_activity(act(ActivityKind.FOLLOW, T0), NO_RULES, Effects())
    member.apply_update(
        MemberUpdated(
            user_id="U1",
            attributes={"region": "tpe"},
            display_name="Amy",
            tags_add=[TagGrant(name="vip", expires_at=T0 + timedelta(days=3))],
        ),
        T0,
        Effects(),
    )
    member.apply_order(order(OrderEventKind.PAID, "O1", 10, T0), "e9", NO_RULES, None, Effects())
    member.mark_seen("e1")
    member.outbox = [{"topic": "t", "key": "k", "value": "v"}]
    doc = member_to_doc(member, T0)
    assert doc["tags"] == ["vip"]
    assert doc["next_expiry"] == T0 + timedelta(days=3)
    back = member_from_doc(doc)
    assert member_to_doc(back, T0) == doc
    assert member_to_doc(member, T0 + timedelta(days=4))["tags"] == []  # an expired tag is not segmentable


def test_snapshot_and_versioned_change() -> None:
    member, effects = Member(CHANNEL, "U1"), Effects()
    member.apply_activity(act(ActivityKind.FOLLOW, T0), NO_RULES, effects)
    member.apply_update(MemberUpdated(user_id="U1", tags_add=[TagGrant(name="x")]), T0, effects)
    change = member.changed(effects, T0)
    assert change.version == 1
    assert change.tags_added == ["x"]
    assert change.snapshot.follow_state is FollowState.FOLLOWED
    assert change.snapshot.tags == ["x"]
    assert member.changed(Effects(changes=[ChangeKind.INTERACTED]), T0).version == 2


def test_a_rule_can_set_attributes() -> None:
    rules = RuleSet.compile(
        [
            rule(
                "R1",
                "student",
                {"kind": "postback", "params": {"who": "student"}},
                set_attributes={"occupation": "student", "age_band": None},
            )
        ]
    )
    member, effects = Member(CHANNEL, "U1", attributes={"age_band": "18-24"}), Effects()
    member.apply_activity(act(ActivityKind.POSTBACK, T0, postback_data="who=student"), rules, effects)
    assert member.attributes == {"occupation": "student"}
    assert ChangeKind.ATTRIBUTES_CHANGED in effects.changes
    assert "student" in member.tags


def test_kafka_replays_are_recognised_by_offset_however_many_inputs_the_member_had() -> None:
    member = Member(CHANNEL, "U1")
    for offset in range(SEEN_IDS * 3):  # more inputs than ids remembered
        member.mark_seen(f"e{offset}", "line_events_v1:2", offset)
    assert member.is_replay("line_events_v1:2", 0)  # its id is long forgotten, its offset is not
    assert member.is_replay("line_events_v1:2", SEEN_IDS * 3 - 1)
    assert not member.is_replay("line_events_v1:2", SEEN_IDS * 3)
    assert not member.is_replay("shop_orders_v1:2", 0)  # offsets are per topic partition

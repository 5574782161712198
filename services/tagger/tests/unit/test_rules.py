import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tagline_contracts.attributes import TagOrigin
from tagline_tagger.domain.activity import Activity, ActivityKind, OrderFacts
from tagline_tagger.domain.rules import (
    FollowCondition,
    KeywordCondition,
    KeywordMatch,
    PostbackCondition,
    Rule,
    RuleHit,
    RuleSet,
    RuleSpec,
)

NOW = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
CH = "channel-1"


def rule(
    condition: dict[str, Any],
    *,
    rule_id: str = "r1",
    channel: str = CH,
    tag: str = "tag",
    enabled: bool = True,
    ttl: int | None = None,
    cooldown: int | None = None,
) -> Rule:
    return Rule.model_validate(
        {
            "id": rule_id,
            "channel_id": channel,
            "version": 1,
            "created_at": NOW,
            "updated_at": NOW,
            "name": f"rule {rule_id}",
            "tag": tag,
            "enabled": enabled,
            "tag_ttl_s": ttl,
            "cooldown_s": cooldown,
            "condition": condition,
        }
    )


def kw(match: str, *patterns: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "keyword", "match": match, "patterns": list(patterns), **extra}


def act(kind: ActivityKind, **fields: Any) -> Activity:
    return Activity(kind=kind, event_id="ev-1", at=NOW, **fields)


def text(value: str, message_type: str = "text") -> Activity:
    return act(ActivityKind.MESSAGE, message_type=message_type, text=value)


def order(kind: str, *, live: bool = False, total_spend: float = 0.0) -> Activity:
    return act(ActivityKind.ORDER, order=OrderFacts("o-1", kind, 100.0, live, total_spend))


def fired(rules: Rule | list[Rule], activity: Activity, channel: str = CH) -> list[str]:
    ruleset = RuleSet.compile(rules if isinstance(rules, list) else [rules])
    return [hit.rule_id for hit in ruleset.hits(channel, activity)]


# --- keywords ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "pattern", "message", "hits"),
    [
        ("exact", "#sale", "＃ＳＡＬＥ", True),
        ("exact", "#sale", "  #Sale ", True),
        ("exact", "#SALE", "#sale", True),
        ("exact", "#sale", "#sale now", False),
        ("exact", "vip 會員", "ＶＩＰ\u3000\u3000會員", True),
        ("contains", "優惠券", "我想買優惠券", True),
        ("contains", "優惠券", "我想買優惠", False),
        ("contains", "Coupon", "any COUPON left?", True),
        ("contains", "ｃｏｕｐｏｎ", "coupon", True),
        ("contains", "new  arrival", "show me the New Arrival list", True),
        ("prefix", "order", "ORDER 123", True),
        ("prefix", "order", "ｏｒｄｅｒ１２３", True),
        ("prefix", "order", "my order", False),
        ("prefix", "訂單", "訂單查詢", True),
        ("prefix", "訂單", "查詢訂單", False),
    ],
)
def test_literal_keyword_matching(match: str, pattern: str, message: str, hits: bool) -> None:
    assert fired(rule(kw(match, pattern)), text(message)) == (["r1"] if hits else [])


@pytest.mark.parametrize(
    ("pattern", "message", "hits"),
    [
        (r"^\d{4}$", "１２３４", True),  # full-width digits are digits after NFKC
        (r"^\d{4}$", "12345", False),
        (r"VIP\d+", "vip007", True),  # case-insensitive
        (r"vip\d+", "ＶＩＰ００７", True),
        (r"code\D\d", "CODE-1", True),  # \D is "not a digit", not case-folded into \d
        (r"code\D\d", "code11", False),
        (r"ＳＡＬＥ", "sale", True),  # the pattern is put in NFKC too
        (r"(折扣|優惠)碼", "請給我優惠碼", True),
        (r"(折扣|優惠)碼", "請給我優惠", False),
    ],
)
def test_regex_keyword(pattern: str, message: str, hits: bool) -> None:
    assert fired(rule(kw("regex", pattern)), text(message)) == (["r1"] if hits else [])


def test_bad_regex_is_rejected_with_the_reason() -> None:
    with pytest.raises(ValidationError) as err:
        RuleSpec.model_validate({"name": "n", "tag": "t", "condition": kw("regex", "ok", "(unclosed")})
    message = str(err.value)
    assert "'(unclosed'" in message
    assert "missing )" in message


def test_regex_metacharacters_are_literal_in_other_match_types() -> None:
    assert fired(rule(kw("contains", "(unclosed")), text("an (unclosed bracket")) == ["r1"]
    assert fired(rule(kw("exact", "a.c")), text("abc")) == []


def test_any_of_the_patterns_fires_the_rule_once() -> None:
    r = rule(kw("contains", "sale", "SALE", "ｓａｌｅ", "coupon"))
    assert fired(r, text("sale coupon")) == ["r1"]
    assert fired(rule(kw("exact", "hi", "HI", "ｈｉ")), text("Hi")) == ["r1"]
    assert fired(rule(kw("regex", "a", "b")), text("ab")) == ["r1"]


@pytest.mark.parametrize(
    "activity",
    [
        text("sale", message_type="sticker"),
        act(ActivityKind.MESSAGE, message_type="text"),  # no text
        act(ActivityKind.POSTBACK, text="sale", postback_data="sale"),
        act(ActivityKind.OTHER, text="sale"),
    ],
)
def test_keywords_only_look_at_text_messages(activity: Activity) -> None:
    assert fired(rule(kw("contains", "sale")), activity) == []


def test_keyword_hit_carries_origin_and_auto_reply() -> None:
    reply = [
        {"type": "text", "text": "謝謝！優惠券在這裡"},
        {"type": "sticker", "packageId": "1", "stickerId": "2"},
    ]
    r = rule(kw("exact", "優惠券", auto_reply=reply), tag="coupon", cooldown=3600)
    assert RuleSet.compile([r]).hits(CH, text("優惠券")) == [
        RuleHit("r1", "coupon", TagOrigin.KEYWORD, None, 3600, tuple(reply))
    ]


def test_keyword_without_auto_reply_has_none() -> None:
    (hit,) = RuleSet.compile([rule(kw("exact", "hi"))]).hits(CH, text("hi"))
    assert hit.auto_reply is None
    assert hit.origin is TagOrigin.KEYWORD


# --- rule set ----------------------------------------------------------------------------------------------


def test_disabled_rules_are_ignored() -> None:
    rules = [rule(kw("contains", "sale"), rule_id="off", enabled=False), rule(kw("contains", "sale"))]
    ruleset = RuleSet.compile(rules)
    assert len(ruleset) == 1
    assert [h.rule_id for h in ruleset.hits(CH, text("sale"))] == ["r1"]


def test_rules_of_other_channels_are_ignored() -> None:
    rules = [
        rule(kw("contains", "sale"), rule_id="a", channel="other"),
        rule({"kind": "unfollow"}, channel="x"),
    ]
    assert fired(rules, text("sale")) == []
    assert fired(rules, act(ActivityKind.UNFOLLOW)) == []
    assert fired(rules, text("sale"), channel="other") == ["a"]
    assert fired(rules, text("sale"), channel="nobody") == []


def test_hits_come_in_rule_id_order() -> None:
    rules = [
        rule(kw("regex", "sale"), rule_id="d"),
        rule({"kind": "message_type", "types": ["text"]}, rule_id="b"),
        rule(kw("exact", "sale"), rule_id="c"),
        rule(kw("contains", "sal"), rule_id="a"),
        rule(kw("prefix", "nope"), rule_id="e"),
    ]
    for _ in range(5):
        random.shuffle(rules)
        assert fired(rules, text("SALE")) == ["a", "b", "c", "d"]


def test_empty_rule_set() -> None:
    assert len(RuleSet.empty()) == 0
    assert RuleSet.empty().hits(CH, text("sale")) == []
    assert len(RuleSet.compile([])) == 0


def test_expires_at_is_the_activity_time_plus_the_ttl() -> None:
    ruleset = RuleSet.compile(
        [rule({"kind": "follow"}, ttl=7 * 86_400), rule({"kind": "follow"}, rule_id="r2")]
    )
    first, second = ruleset.hits(CH, act(ActivityKind.FOLLOW))
    assert first.expires_at == NOW + timedelta(days=7)
    assert second.expires_at is None
    assert first.origin is TagOrigin.BEHAVIOR
    assert first.auto_reply is None


def test_cooldown_is_reported() -> None:
    (hit,) = RuleSet.compile([rule({"kind": "unfollow"}, cooldown=60)]).hits(CH, act(ActivityKind.UNFOLLOW))
    assert hit.cooldown_s == 60


# --- behavior conditions -----------------------------------------------------------------------------------

BEHAVIOR_CASES: list[tuple[dict[str, Any], Activity, bool]] = [
    ({"kind": "follow"}, act(ActivityKind.FOLLOW), True),
    ({"kind": "follow"}, act(ActivityKind.FOLLOW, unblocked=True), True),
    ({"kind": "follow", "when": "any"}, act(ActivityKind.UNFOLLOW), False),
    ({"kind": "follow", "when": "new"}, act(ActivityKind.FOLLOW), True),
    ({"kind": "follow", "when": "new"}, act(ActivityKind.FOLLOW, unblocked=True), False),
    ({"kind": "follow", "when": "unblocked"}, act(ActivityKind.FOLLOW, unblocked=True), True),
    ({"kind": "follow", "when": "unblocked"}, act(ActivityKind.FOLLOW), False),
    ({"kind": "unfollow"}, act(ActivityKind.UNFOLLOW), True),
    ({"kind": "unfollow"}, act(ActivityKind.FOLLOW), False),
    ({"kind": "beacon"}, act(ActivityKind.BEACON, beacon_hwid="d41d8cd98f", beacon_type="enter"), True),
    ({"kind": "beacon", "hwid": "d41d8cd98f"}, act(ActivityKind.BEACON, beacon_hwid="d41d8cd98f"), True),
    ({"kind": "beacon", "hwid": "d41d8cd98f"}, act(ActivityKind.BEACON, beacon_hwid="0000000000"), False),
    ({"kind": "beacon", "type": "stay"}, act(ActivityKind.BEACON, beacon_hwid="a", beacon_type="stay"), True),
    (
        {"kind": "beacon", "type": "stay"},
        act(ActivityKind.BEACON, beacon_hwid="a", beacon_type="enter"),
        False,
    ),
    (
        {"kind": "beacon", "hwid": "a", "type": "banner"},
        act(ActivityKind.BEACON, beacon_hwid="b", beacon_type="banner"),
        False,
    ),
    ({"kind": "beacon"}, act(ActivityKind.FOLLOW), False),
    ({"kind": "video_play_complete"}, act(ActivityKind.VIDEO_PLAY_COMPLETE, video_tracking_id="v1"), True),
    (
        {"kind": "video_play_complete", "tracking_id": "v1"},
        act(ActivityKind.VIDEO_PLAY_COMPLETE, video_tracking_id="v1"),
        True,
    ),
    (
        {"kind": "video_play_complete", "tracking_id": "v1"},
        act(ActivityKind.VIDEO_PLAY_COMPLETE, video_tracking_id="v2"),
        False,
    ),
    ({"kind": "account_link"}, act(ActivityKind.ACCOUNT_LINK, link_result="failed"), True),
    ({"kind": "account_link", "result": "ok"}, act(ActivityKind.ACCOUNT_LINK, link_result="ok"), True),
    ({"kind": "account_link", "result": "ok"}, act(ActivityKind.ACCOUNT_LINK, link_result="failed"), False),
    ({"kind": "account_link"}, act(ActivityKind.OTHER), False),
    ({"kind": "message_type", "types": ["sticker", "image"]}, text("", message_type="image"), True),
    ({"kind": "message_type", "types": ["sticker", "image"]}, text("hi"), False),
    ({"kind": "message_type", "types": ["location"]}, act(ActivityKind.POSTBACK, postback_data="x"), False),
    ({"kind": "purchase"}, order("placed"), True),
    ({"kind": "purchase"}, order("paid"), False),
    ({"kind": "purchase"}, act(ActivityKind.ORDER), False),  # no order facts
    ({"kind": "live_buyer"}, order("placed", live=True), True),
    ({"kind": "live_buyer"}, order("placed"), False),
    ({"kind": "live_buyer"}, order("paid", live=True), False),
    ({"kind": "total_spend", "at_least": 3000}, order("paid", total_spend=3000), True),
    ({"kind": "total_spend", "at_least": 3000}, order("paid", total_spend=5200.5), True),
    ({"kind": "total_spend", "at_least": 3000}, order("paid", total_spend=2999.99), False),
    ({"kind": "total_spend", "at_least": 3000}, order("placed", total_spend=9000), False),
    ({"kind": "campaign_received", "campaign": "xmas"}, act(ActivityKind.CAMPAIGN, campaign="xmas"), True),
    ({"kind": "campaign_received", "campaign": "xmas"}, act(ActivityKind.CAMPAIGN, campaign="nye"), False),
    ({"kind": "campaign_received", "campaign": "xmas"}, act(ActivityKind.CAMPAIGN), False),
]


@pytest.mark.parametrize(("condition", "activity", "hits"), BEHAVIOR_CASES)
def test_behavior_conditions(condition: dict[str, Any], activity: Activity, hits: bool) -> None:
    r = rule(condition, ttl=60)
    result = RuleSet.compile([r]).hits(CH, activity)
    if hits:
        assert result == [RuleHit("r1", "tag", TagOrigin.BEHAVIOR, NOW + timedelta(seconds=60), None, None)]
    else:
        assert result == []


def test_every_condition_kind_has_a_positive_and_a_negative_case() -> None:
    kinds = {c["kind"] for c, _, _ in BEHAVIOR_CASES}
    for expected in (True, False):
        assert {c["kind"] for c, _, hit in BEHAVIOR_CASES if hit is expected} == kinds


def test_a_behavior_rule_set_does_not_fire_on_other_kinds() -> None:
    rules = [rule(c, rule_id=str(i)) for i, (c, _, _) in enumerate(BEHAVIOR_CASES)]
    ruleset = RuleSet.compile(rules)
    assert ruleset.hits(CH, act(ActivityKind.OTHER)) == []


# --- postback ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "data", "hits"),
    [
        ({"action": "buy"}, "action=buy&item=42", True),
        ({"action": "buy", "item": "42"}, "item=42&action=buy", True),
        ({"action": "buy", "item": "42"}, "action=buy", False),
        ({"action": "buy"}, "action=buying", False),
        ({"action": "buy"}, "action=sell", False),
        ({"item": "*"}, "action=buy&item=42", True),
        ({"item": "*"}, "action=buy&item=", True),
        ({"item": "*"}, "action=buy", False),
        ({"action": "buy", "item": "*"}, "action=sell&item=1", False),
        ({"note": ""}, "note=&x=1", True),
        ({"q": "優惠 券"}, "q=%E5%84%AA%E6%83%A0+%E5%88%B8", True),
        ({"q": "a&b"}, "q=a%26b", True),
        ({"q": "a"}, "q=a%26b", False),
        ({"tag": "blue"}, "tag=red&tag=blue", True),
        ({"action": "buy"}, "not a query string", False),
    ],
)
def test_postback_params(params: dict[str, str], data: str, hits: bool) -> None:
    r = rule({"kind": "postback", "params": params})
    assert fired(r, act(ActivityKind.POSTBACK, postback_data=data)) == (["r1"] if hits else [])


def test_postback_data_matches_the_whole_string() -> None:
    r = rule({"kind": "postback", "data": "action=buy&item=42"})
    assert fired(r, act(ActivityKind.POSTBACK, postback_data="action=buy&item=42")) == ["r1"]
    assert fired(r, act(ActivityKind.POSTBACK, postback_data="item=42&action=buy")) == []
    assert fired(r, act(ActivityKind.POSTBACK)) == []


def test_postback_params_and_data_rules_together() -> None:
    rules = [
        rule({"kind": "postback", "data": "action=buy"}, rule_id="b"),
        rule({"kind": "postback", "params": {"action": "*"}}, rule_id="a"),
        rule({"kind": "postback", "params": {"action": "sell"}}, rule_id="c"),
    ]
    assert fired(rules, act(ActivityKind.POSTBACK, postback_data="action=buy")) == ["a", "b"]
    assert fired(rules, act(ActivityKind.POSTBACK)) == []
    assert fired(rules, text("action=buy")) == []


# --- validation --------------------------------------------------------------------------------------------

SIX_MESSAGES = [{"type": "text", "text": str(i)} for i in range(6)]


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (kw("contains"), "at least 1 item"),
        (kw("contains", *[f"p{i}" for i in range(51)]), "at most 50 items"),
        (kw("contains", ""), "at least 1 character"),
        (kw("contains", "x" * 201), "at most 200 characters"),
        (kw("exact", "ok", " \u3000 "), "only whitespace"),
        (kw("fuzzy", "x"), "'exact', 'contains', 'prefix' or 'regex'"),
        ({"kind": "keyword", "patterns": ["x"]}, "match"),
        (kw("contains", "x", auto_reply=SIX_MESSAGES), "at most 5 items"),
        (kw("contains", "x", auto_reply=[]), "at least 1 item"),
        (
            kw("contains", "x", auto_reply=[{"type": "text", "text": "a"}, {"text": "no type"}]),
            "auto_reply[1]",
        ),
        (kw("contains", "x", auto_reply=[{"type": 3}]), "auto_reply[0].type: must be one of"),
        (kw("contains", "x", auto_reply=["hello"]), "valid dictionary"),
        ({"kind": "follow", "auto_reply": [{"type": "text", "text": "hi"}]}, "Extra inputs"),
        ({"kind": "follow", "when": "sometimes"}, "'any', 'new' or 'unblocked'"),
        ({"kind": "postback"}, "exactly one of 'params' and 'data'"),
        ({"kind": "postback", "params": {"a": "1"}, "data": "a=1"}, "exactly one of 'params' and 'data'"),
        ({"kind": "postback", "params": {}}, "at least 1 item"),
        ({"kind": "postback", "params": {str(i): "v" for i in range(21)}}, "at most 20 items"),
        ({"kind": "beacon", "type": "leave"}, "'enter', 'banner' or 'stay'"),
        ({"kind": "account_link", "result": "maybe"}, "'ok' or 'failed'"),
        ({"kind": "message_type", "types": []}, "at least 1 item"),
        ({"kind": "message_type", "types": [f"t{i}" for i in range(11)]}, "at most 10 items"),
        ({"kind": "total_spend", "at_least": 0}, "greater than 0"),
        ({"kind": "total_spend"}, "at_least"),
        ({"kind": "campaign_received"}, "campaign"),
        ({"kind": "birthday"}, "does not match any of the expected tags"),
        ({"match": "exact", "patterns": ["x"]}, "Unable to extract tag using discriminator 'kind'"),
    ],
)
def test_invalid_conditions_are_rejected(condition: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(reason)):
        RuleSpec.model_validate({"name": "n", "tag": "t", "condition": condition})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": ""}, "at least 1 character"),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"tag": ""}, "at least 1 character"),
        ({"tag": "x" * 51}, "at most 50 characters"),
        ({"tag": "a\nb"}, "should match pattern"),
        ({"tag_ttl_s": 0}, "greater than 0"),
        ({"cooldown_s": -5}, "greater than 0"),
        ({"tag_ttl_s": 10**12}, "less than or equal"),
        ({"colour": "red"}, "Extra inputs"),
    ],
)
def test_invalid_rule_fields_are_rejected(change: dict[str, Any], reason: str) -> None:
    body = {"name": "n", "tag": "t", "condition": {"kind": "unfollow"}} | change
    with pytest.raises(ValidationError, match=re.escape(reason)):
        RuleSpec.model_validate(body)


def test_stored_rules_need_aware_times() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Rule.model_validate(rule({"kind": "unfollow"}).model_dump() | {"created_at": datetime(2026, 1, 1)})


def test_a_valid_spec_round_trips_through_json() -> None:
    r = rule(
        kw("regex", r"^\d+$", auto_reply=[{"type": "text", "text": "收到"}]),
        ttl=86_400,
        cooldown=600,
        tag="數字",
    )
    assert Rule.model_validate_json(r.model_dump_json()) == r
    spec = RuleSpec.model_validate({"name": "n", "tag": "t", "condition": {"kind": "follow"}})
    assert spec.enabled is True
    assert spec.tag_ttl_s is None
    assert spec.cooldown_s is None
    assert spec.condition == FollowCondition()
    assert spec.origin is TagOrigin.BEHAVIOR
    assert isinstance(r.condition, KeywordCondition)
    assert r.condition.match is KeywordMatch.REGEX
    assert r.origin is TagOrigin.KEYWORD


def test_rules_are_frozen() -> None:
    r = rule({"kind": "postback", "params": {"a": "1"}})
    with pytest.raises(ValidationError):
        r.enabled = False  # type: ignore[misc]
    assert isinstance(r.condition, PostbackCondition)


# --- properties --------------------------------------------------------------------------------------------

# What members type: ASCII, full-width forms, CJK ideographs, full-width punctuation and spaces.
MEMBER_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
        st.sampled_from("\u3000，。！？「」\t\n"),
    ),
    max_size=60,
)


@given(MEMBER_TEXT, st.data())
def test_a_slice_of_the_text_as_contains_pattern_hits(message: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(message)))
    end = data.draw(st.integers(start, min(len(message), start + 200)))
    pattern = message[start:end]
    if not pattern.strip():
        return  # whitespace-only patterns are rejected (covered above)
    assert fired(rule(kw("contains", pattern)), text(message)) == ["r1"]


@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30),
    st.lists(st.booleans(), min_size=30, max_size=30),
    st.sampled_from([" ", "\u3000", "\t", "  "]),
)
def test_exact_ignores_width_case_and_surrounding_space(word: str, flips: list[bool], space: str) -> None:
    typed = "".join(
        (chr(ord(c.upper()) + 0xFEE0) if flip else c.lower()) if c.upper().isascii() else c
        for c, flip in zip(word, flips, strict=False)
    )
    assert fired(rule(kw("exact", word)), text(space + typed + space)) == ["r1"]


@given(st.permutations(list(range(8))), st.sampled_from(["sale", "SALE now", "other"]))
def test_result_does_not_depend_on_the_order_rules_are_given(order_: list[int], message: str) -> None:
    kinds = ["exact", "contains", "prefix", "regex"]
    rules = [rule(kw(kinds[i % 4], "sale"), rule_id=f"r{i}", enabled=i != 5) for i in range(8)]
    expected = RuleSet.compile(rules).hits(CH, text(message))
    assert RuleSet.compile([rules[i] for i in order_]).hits(CH, text(message)) == expected
    assert [h.rule_id for h in expected] == sorted(h.rule_id for h in expected)
    assert "r5" not in {h.rule_id for h in expected}

"""Tagging rules: what the HTTP API accepts and stores (:class:`RuleSpec`, :class:`Rule`), and the compiled
:class:`RuleSet` the tagger evaluates against every :class:`~tagline_tagger.domain.activity.Activity`.

A rule puts one tag on the member when its ``condition`` matches an activity. Keyword conditions look at
the text of text messages (compared with :func:`~tagline_tagger.domain.text.normalize`, so full-width input
and case do not matter) and may carry LINE messages to reply with; every other condition looks at what the
member did (followed, tapped a postback, bought, …).

:meth:`RuleSet.hits` runs for every activity, so :meth:`RuleSet.compile` does the work up front: patterns are
normalized and regexes compiled once, rules are grouped by channel and by the activity kind they can match,
exact keywords are looked up in a dict, and the text is normalized once per activity.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from pydantic import AwareDatetime, Field, field_validator, model_validator

from tagline_contracts.attributes import TagName, TagOrigin, check_attribute_keys
from tagline_contracts.base import Contract
from tagline_contracts.line_messages import check_line_messages
from tagline_contracts.members import AttributeValue
from tagline_contracts.orders import OrderEventKind
from tagline_tagger.domain.activity import Activity, ActivityKind
from tagline_tagger.domain.text import normalize

__all__ = [
    "MAX_SECONDS",
    "AccountLinkCondition",
    "BeaconCondition",
    "CampaignReceivedCondition",
    "Condition",
    "FollowCondition",
    "FollowWhen",
    "KeywordCondition",
    "KeywordMatch",
    "LiveBuyerCondition",
    "MessageTypeCondition",
    "PostbackCondition",
    "PurchaseCondition",
    "Rule",
    "RuleHit",
    "RuleSet",
    "RuleSpec",
    "TotalSpendCondition",
    "UnfollowCondition",
    "VideoPlayCompleteCondition",
]

MAX_SECONDS = 10 * 366 * 86_400
"""Upper bound of ``tag_ttl_s`` and ``cooldown_s`` (about ten years): far enough for any campaign, and it
keeps ``activity.at + ttl`` away from ``datetime``'s overflow."""

WILDCARD = "*"
"""A postback ``params`` value meaning "the key is present, with any value"."""

Pattern = Annotated[str, Field(min_length=1, max_length=200)]
LineMessage = dict[str, Any]
"""A LINE message object as the Messaging API takes it (``{"type": "text", "text": "…"}``, …)."""


class KeywordMatch(StrEnum):
    EXACT = "exact"
    CONTAINS = "contains"
    PREFIX = "prefix"
    REGEX = "regex"


class FollowWhen(StrEnum):
    ANY = "any"
    NEW = "new"
    """A first follow."""
    UNBLOCKED = "unblocked"
    """The member unblocked the account (``follow.isUnblocked``)."""


class KeywordCondition(Contract):
    """A text message whose normalized text matches one of ``patterns``.

    ``exact``, ``contains`` and ``prefix`` compare normalized patterns with the normalized text. ``regex``
    patterns are searched (``re.search``, case-insensitive) in the normalized text; they are only put in NFKC,
    not case-folded, so escapes such as ``\\D`` keep their meaning.
    """

    kind: Literal["keyword"] = "keyword"
    match: KeywordMatch
    patterns: tuple[Pattern, ...] = Field(min_length=1, max_length=50)
    auto_reply: tuple[LineMessage, ...] | None = Field(default=None, min_length=1, max_length=5)
    """LINE messages to reply with when the rule fires (a reply holds at most five); validated as the sender
    validates them (:mod:`tagline_contracts.line_messages`)."""

    @field_validator("auto_reply")
    @classmethod
    def _valid_messages(cls, value: tuple[LineMessage, ...] | None) -> tuple[LineMessage, ...] | None:
        # as the sender checks them at send time (line-bot-sdk's models and LINE's limits), so a rule never
        # fires a reply that dead-letters
        return None if value is None else check_line_messages(value, "auto_reply")

    @model_validator(mode="after")
    def _patterns_usable(self) -> KeywordCondition:
        for pattern in self.patterns:
            if self.match is KeywordMatch.REGEX:
                _compile_regex(pattern)
            elif not normalize(pattern):
                raise ValueError(f"pattern {pattern!r} is only whitespace")
        return self


class FollowCondition(Contract):
    kind: Literal["follow"] = "follow"
    when: FollowWhen = FollowWhen.ANY


class UnfollowCondition(Contract):
    kind: Literal["unfollow"] = "unfollow"


class PostbackCondition(Contract):
    """A postback whose data holds every ``params`` pair (as a query string), or equals ``data`` exactly.

    ``params`` values are compared decoded (``a%20b`` and ``a+b`` in the data are ``a b``); a value of ``*``
    only asks for the key to be there. When a key appears several times in the data, any of its values counts.
    """

    kind: Literal["postback"] = "postback"
    params: dict[Annotated[str, Field(min_length=1)], str] | None = Field(
        default=None, min_length=1, max_length=20
    )
    data: str | None = Field(default=None, min_length=1, max_length=300)

    @model_validator(mode="after")
    def _params_or_data(self) -> PostbackCondition:
        if (self.params is None) == (self.data is None):
            raise ValueError("a postback condition needs exactly one of 'params' and 'data'")
        return self


class BeaconCondition(Contract):
    kind: Literal["beacon"] = "beacon"
    hwid: str | None = Field(default=None, min_length=1)
    type: Literal["enter", "banner", "stay"] | None = None


class VideoPlayCompleteCondition(Contract):
    kind: Literal["video_play_complete"] = "video_play_complete"
    tracking_id: str | None = Field(default=None, min_length=1)


class AccountLinkCondition(Contract):
    kind: Literal["account_link"] = "account_link"
    result: Literal["ok", "failed"] | None = None


class MessageTypeCondition(Contract):
    """A message of one of ``types`` (``sticker``, ``image``, ``location``, …)."""

    kind: Literal["message_type"] = "message_type"
    types: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1, max_length=10)


class PurchaseCondition(Contract):
    """An order was placed."""

    kind: Literal["purchase"] = "purchase"


class LiveBuyerCondition(Contract):
    """An order was placed in a live session."""

    kind: Literal["live_buyer"] = "live_buyer"


class TotalSpendCondition(Contract):
    """A payment brought the member's total paid spend to ``at_least`` or more."""

    kind: Literal["total_spend"] = "total_spend"
    at_least: float = Field(gt=0, allow_inf_nan=False)


class CampaignReceivedCondition(Contract):
    """LINE accepted a send of ``campaign`` to the member."""

    kind: Literal["campaign_received"] = "campaign_received"
    campaign: str = Field(min_length=1)


Condition = Annotated[
    KeywordCondition
    | FollowCondition
    | UnfollowCondition
    | PostbackCondition
    | BeaconCondition
    | VideoPlayCompleteCondition
    | AccountLinkCondition
    | MessageTypeCondition
    | PurchaseCondition
    | LiveBuyerCondition
    | TotalSpendCondition
    | CampaignReceivedCondition,
    Field(discriminator="kind"),
]


class RuleSpec(Contract):
    """A rule as a create or update request carries it."""

    name: str = Field(min_length=1, max_length=100)
    tag: TagName
    """The tag the rule puts on the member."""
    enabled: bool = True
    tag_ttl_s: int | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """The tag expires this many seconds after the activity (``None``: never)."""
    cooldown_s: int | None = Field(default=None, gt=0, le=MAX_SECONDS)
    """The rule does not fire again for the same member within this many seconds of its last firing (applied
    by the member model; :class:`RuleSet` only reports it)."""
    condition: Condition
    set_attributes: dict[str, AttributeValue] = Field(default_factory=dict, max_length=20)
    """Attributes the rule also sets on the member when it fires (``null`` removes one)."""

    @field_validator("set_attributes")
    @classmethod
    def _attribute_keys(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        return check_attribute_keys(value)

    @property
    def origin(self) -> TagOrigin:
        return TagOrigin.KEYWORD if isinstance(self.condition, KeywordCondition) else TagOrigin.BEHAVIOR


class Rule(RuleSpec):
    """A stored rule: the spec plus its identity, channel and version."""

    id: str = Field(min_length=1)
    channel_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    created_at: AwareDatetime
    updated_at: AwareDatetime


@dataclass(frozen=True, slots=True)
class RuleHit:
    """Rule ``rule_id`` fired: put ``tag`` on the member."""

    rule_id: str
    tag: str
    origin: TagOrigin
    expires_at: datetime | None
    """``activity.at + tag_ttl_s``; ``None``: the tag does not expire."""
    cooldown_s: int | None
    auto_reply: tuple[dict[str, Any], ...] | None
    """Keyword rules' reply messages (shared with the rule set: copy before changing them)."""
    set_attributes: dict[str, AttributeValue] | None = None
    """Attributes the rule sets on the member (e.g. a postback "I am a student" → ``segment=student``)."""


def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(unicodedata.normalize("NFKC", pattern), re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {err}") from None


@dataclass(frozen=True, slots=True)
class _Target:
    """What a compiled rule yields when it fires."""

    rule_id: str
    tag: str
    origin: TagOrigin
    ttl: timedelta | None
    cooldown_s: int | None
    auto_reply: tuple[dict[str, Any], ...] | None
    set_attributes: dict[str, AttributeValue] | None = None

    def hit(self, at: datetime) -> RuleHit:
        expires_at = None if self.ttl is None else at + self.ttl
        return RuleHit(
            self.rule_id,
            self.tag,
            self.origin,
            expires_at,
            self.cooldown_s,
            self.auto_reply,
            self.set_attributes,
        )


ActivityTest = Callable[[Activity], bool]
PairsTest = Callable[[frozenset[tuple[str, str]], frozenset[str]], bool]


@dataclass(slots=True)
class _ChannelRules:
    exact: dict[str, list[_Target]] = field(default_factory=dict)
    """Normalized exact keyword → the rules it fires."""
    contains: list[tuple[_Target, tuple[str, ...]]] = field(default_factory=list)
    """``contains`` keyword rules and their normalized patterns."""
    prefix: list[tuple[_Target, tuple[str, ...]]] = field(default_factory=list)
    """``prefix`` keyword rules and their normalized patterns."""
    regex: list[tuple[_Target, tuple[re.Pattern[str], ...]]] = field(default_factory=list)
    """``regex`` keyword rules and their compiled patterns."""
    params: list[tuple[_Target, PairsTest]] = field(default_factory=list)
    """Postback ``params`` rules, on the parsed data."""
    by_kind: dict[ActivityKind, list[tuple[_Target, ActivityTest]]] = field(default_factory=dict)
    """Every other rule, by the one activity kind it can match."""

    @property
    def has_keywords(self) -> bool:
        return bool(self.exact or self.contains or self.prefix or self.regex)

    def keyword_hits(self, text: str, fired: list[_Target]) -> None:
        """Append to ``fired`` the keyword rules that normalized ``text`` fires (each rule once)."""
        exact = self.exact.get(text)
        if exact is not None:
            fired.extend(exact)
        # Plain loops: this runs for every text message over every keyword rule of the channel.
        for target, patterns in self.contains:
            for pattern in patterns:
                if pattern in text:
                    fired.append(target)
                    break
        for target, patterns in self.prefix:
            if text.startswith(patterns):
                fired.append(target)
        for target, regexes in self.regex:
            for regex in regexes:
                if regex.search(text) is not None:
                    fired.append(target)
                    break

    def add(self, kind: ActivityKind, target: _Target, test: ActivityTest) -> None:
        self.by_kind.setdefault(kind, []).append((target, test))


def _rule_id(target: _Target) -> str:
    return target.rule_id


def _params(params: dict[str, str]) -> PairsTest:
    keys = frozenset(k for k, v in params.items() if v == WILDCARD)
    pairs = frozenset((k, v) for k, v in params.items() if v != WILDCARD)

    def test(data_pairs: frozenset[tuple[str, str]], data_keys: frozenset[str]) -> bool:
        return pairs <= data_pairs and keys <= data_keys

    return test


def _add_keyword(rules: _ChannelRules, target: _Target, cond: KeywordCondition) -> None:
    if cond.match is KeywordMatch.REGEX:
        rules.regex.append((target, tuple(_compile_regex(p) for p in cond.patterns)))
        return
    # Several patterns can normalize to the same text; the rule must still fire once.
    patterns = tuple(dict.fromkeys(normalize(p) for p in cond.patterns))
    if cond.match is KeywordMatch.EXACT:
        for pattern in patterns:
            rules.exact.setdefault(pattern, []).append(target)
    elif cond.match is KeywordMatch.PREFIX:
        rules.prefix.append((target, patterns))
    else:
        rules.contains.append((target, patterns))


def _add(rules: _ChannelRules, target: _Target, cond: Condition) -> None:  # noqa: PLR0912 - one case a kind
    match cond:
        case KeywordCondition():
            _add_keyword(rules, target, cond)
        case FollowCondition(when=FollowWhen.ANY):
            rules.add(ActivityKind.FOLLOW, target, lambda a: True)
        case FollowCondition(when=FollowWhen.NEW):
            rules.add(ActivityKind.FOLLOW, target, lambda a: not a.unblocked)
        case FollowCondition():
            rules.add(ActivityKind.FOLLOW, target, lambda a: a.unblocked)
        case UnfollowCondition():
            rules.add(ActivityKind.UNFOLLOW, target, lambda a: True)
        case PostbackCondition(params=dict() as params):
            rules.params.append((target, _params(params)))
        case PostbackCondition(data=data):
            rules.add(ActivityKind.POSTBACK, target, lambda a: a.postback_data == data)
        case BeaconCondition(hwid=hwid, type=beacon_type):
            rules.add(
                ActivityKind.BEACON,
                target,
                lambda a: (
                    (hwid is None or a.beacon_hwid == hwid)
                    and (beacon_type is None or a.beacon_type == beacon_type)
                ),
            )
        case VideoPlayCompleteCondition(tracking_id=tracking_id):
            rules.add(
                ActivityKind.VIDEO_PLAY_COMPLETE,
                target,
                lambda a: tracking_id is None or a.video_tracking_id == tracking_id,
            )
        case AccountLinkCondition(result=result):
            rules.add(ActivityKind.ACCOUNT_LINK, target, lambda a: result is None or a.link_result == result)
        case MessageTypeCondition(types=types):
            wanted = frozenset(types)
            rules.add(ActivityKind.MESSAGE, target, lambda a: a.message_type in wanted)
        case PurchaseCondition():
            rules.add(
                ActivityKind.ORDER,
                target,
                lambda a: a.order is not None and a.order.kind == OrderEventKind.PLACED,
            )
        case LiveBuyerCondition():
            rules.add(
                ActivityKind.ORDER,
                target,
                lambda a: a.order is not None and a.order.kind == OrderEventKind.PLACED and a.order.live,
            )
        case TotalSpendCondition(at_least=at_least):
            rules.add(
                ActivityKind.ORDER,
                target,
                lambda a: (
                    a.order is not None
                    and a.order.kind == OrderEventKind.PAID
                    and a.order.total_spend >= at_least
                ),
            )
        case CampaignReceivedCondition(campaign=campaign):
            rules.add(ActivityKind.CAMPAIGN, target, lambda a: a.campaign == campaign)


class RuleSet:
    """The enabled rules of every channel, compiled for :meth:`hits`.

    Immutable: build a new one (:meth:`compile`) when rules change.
    """

    __slots__ = ("_channels", "_size")

    def __init__(self, channels: dict[str, _ChannelRules], size: int) -> None:
        self._channels = channels
        self._size = size

    @classmethod
    def empty(cls) -> RuleSet:
        return cls({}, 0)

    @classmethod
    def compile(cls, rules: Iterable[Rule]) -> RuleSet:
        channels: dict[str, _ChannelRules] = {}
        size = 0
        for rule in sorted((r for r in rules if r.enabled), key=lambda r: r.id):
            cond = rule.condition
            target = _Target(
                rule_id=rule.id,
                tag=rule.tag,
                origin=rule.origin,
                ttl=None if rule.tag_ttl_s is None else timedelta(seconds=rule.tag_ttl_s),
                cooldown_s=rule.cooldown_s,
                auto_reply=cond.auto_reply if isinstance(cond, KeywordCondition) else None,
                set_attributes=rule.set_attributes or None,
            )
            _add(channels.setdefault(rule.channel_id, _ChannelRules()), target, cond)
            size += 1
        return cls(channels, size)

    def __len__(self) -> int:
        """How many (enabled) rules the set holds, over all channels."""
        return self._size

    def hits(self, channel_id: str, activity: Activity) -> list[RuleHit]:
        """One :class:`RuleHit` per rule of ``channel_id`` that ``activity`` fires, in rule id order."""
        rules = self._channels.get(channel_id)
        if rules is None:
            return []
        fired: list[_Target] = []
        kind = activity.kind
        if kind is ActivityKind.MESSAGE:
            if activity.text is not None and activity.message_type == "text" and rules.has_keywords:
                rules.keyword_hits(normalize(activity.text), fired)
        elif kind is ActivityKind.POSTBACK and rules.params and activity.postback_data is not None:
            data_pairs = frozenset(parse_qsl(activity.postback_data, keep_blank_values=True))
            data_keys = frozenset(k for k, _ in data_pairs)
            for target, pairs_test in rules.params:
                if pairs_test(data_pairs, data_keys):
                    fired.append(target)
        for target, activity_test in rules.by_kind.get(kind, ()):
            if activity_test(activity):
                fired.append(target)
        if len(fired) > 1:
            fired.sort(key=_rule_id)
        at = activity.at
        return [target.hit(at) for target in fired]

"""The emulator's state and request processing, independent of HTTP.

The ASGI layer (``app.py``) turns an HTTP request into a :class:`Call`, asks :meth:`Emulator.begin` for
an :class:`Exchange` (authentication, a request id, the fault to apply, the record), then, according to
the fault, sleeps, calls :meth:`Emulator.execute` (the endpoint's effect and answer) or
:meth:`Emulator.refuse`, and writes or drops the response. Everything here is synchronous, so one request
is processed atomically with respect to the others (no check-then-act races between concurrent requests).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from tagline_line_emulator import endpoints as ep
from tagline_line_emulator.endpoints import DEFAULT_RATE_LIMITS, RateLimit, check_endpoint
from tagline_line_emulator.faults import Fault, FaultBook
from tagline_line_emulator.limits import SlidingWindowLimiter
from tagline_line_emulator.points import GrantRequest, IdempotencyConflict, PointsLedger
from tagline_line_emulator.quota import Quota
from tagline_line_emulator.records import ReceivedRequest, Recorder, fingerprint, summary
from tagline_line_emulator.reply_tokens import ReplyTokenBook
from tagline_line_emulator.retry_keys import RETRY_KEY_TTL_S, AcceptedKey, RetryKeyTable, is_valid_retry_key
from tagline_line_emulator.spec import BodyValidator

# LINE's error messages
AUTH_FAILED = "Authentication failed. Confirm that the access token in the authorization header is valid."
RATE_LIMITED = "The API rate limit has been exceeded. Try again later."
MONTHLY_LIMIT = "You have reached your monthly limit."
RETRY_KEY_INVALID = "The retry key is invalid"
RETRY_KEY_ACCEPTED = "The retry key is already accepted"
INVALID_REPLY_TOKEN = "Invalid reply token"  # noqa: S105 (a message, not a secret)
NOT_FOUND = "Not found"
INTERNAL_ERROR = "Internal server error"
GATEWAY_TIMEOUT = "Gateway timeout"

# message types LINE can quote (they get a quoteToken in sentMessages)
_QUOTABLE = frozenset({"text", "textV2", "sticker", "image", "video"})
_NAMES = ("Amber", "Bo-Wei", "Chia-Hui", "Daniel", "Emi", "Fang", "Guan-Yu", "Hsin", "I-Ting", "Jun")
_LANGUAGES = ("zh-TW", "en", "ja", "th")


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """``rate_limits`` override the defaults per endpoint (``RateLimit`` or ``(limit, window_s)``).

    ``channels`` is ``{channel id: access token}``: the channels this LINE platform has. Everything about a
    channel (quota, deliveries, reply tokens, points, the control API's paths) is keyed by its channel id; a
    bearer token names the channel it belongs to, another token gets LINE's 401, and the control and POINTS
    APIs answer an unknown channel id with an error. ``None`` (the default): any bearer token is accepted and
    is itself the channel id, for tests that use the channel id as the access token.
    """

    reply_token_ttl_s: float = 30.0
    rate_limits: Mapping[str, RateLimit | tuple[int, float]] = field(default_factory=dict)
    spec_path: str | Path | None = None
    channels: Mapping[str, str] | None = None
    retry_key_ttl_s: float = RETRY_KEY_TTL_S
    seed: int = 0

    def __post_init__(self) -> None:
        if self.channels is None:
            return
        for channel, token in self.channels.items():
            if not channel or not token:
                raise ValueError("a channel needs a non-empty channel id and access token")
        if len(set(self.channels.values())) < len(self.channels):
            raise ValueError("two channels have the same access token")

    def effective_rate_limits(self) -> dict[str, RateLimit]:
        limits = dict(DEFAULT_RATE_LIMITS)
        for endpoint, value in self.rate_limits.items():
            limits[check_endpoint(endpoint)] = value if isinstance(value, RateLimit) else RateLimit(*value)
        return limits


@dataclass(frozen=True, slots=True)
class Call:
    """An incoming request, as far as the emulator cares."""

    endpoint: str
    authorization: str | None = None
    body: bytes = b""
    retry_key: str | None = None
    idempotency_key: str | None = None
    user_id: str | None = None  # the profile's path parameter
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class Exchange:
    """A request in flight: its record, the fault chosen for it, and its answer once decided."""

    call: Call
    record: ReceivedRequest
    fault: Fault | None = None
    answer: Answer | None = None

    @property
    def request_id(self) -> str:
        return self.record.request_id


@dataclass(slots=True)
class _Narrowcast:
    target: int
    accepted_at: float


@dataclass(slots=True)
class _Channel:
    quota: Quota = field(default_factory=Quota)
    blocked: set[str] = field(default_factory=set)
    friends: tuple[str, ...] = ()
    narrowcasts: dict[str, _Narrowcast] = field(default_factory=dict)


class _Rejected(Exception):
    """Ends processing with an error answer (raised and caught inside :meth:`Emulator.execute`)."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = (), **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        self.extra = extra


def _error(status: int, message: str, headers: tuple[tuple[str, str], ...] = (), **extra: Any) -> Answer:
    return Answer(status, {"message": message, **extra}, headers)


def _iso(wall_time: float) -> str:
    return datetime.fromtimestamp(wall_time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Emulator:
    """The emulated LINE platform for any number of channels (see the package README for the behaviour)."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or EmulatorConfig()
        self._clock = clock
        self._wall_clock = wall_clock
        self._validator = BodyValidator.load(self.config.spec_path)
        self._channel_of_token = {token: channel for channel, token in (self.config.channels or {}).items()}
        self._message_ids = count(600_000_000_000_000_001)
        self._handlers: dict[str, Callable[[Exchange, float], Answer]] = {
            ep.REPLY: self._reply,
            ep.PUSH: self._push,
            ep.MULTICAST: self._multicast,
            ep.NARROWCAST: self._narrowcast,
            ep.NARROWCAST_PROGRESS: self._narrowcast_progress,
            ep.BROADCAST: self._broadcast,
            ep.QUOTA: self._get_quota,
            ep.QUOTA_CONSUMPTION: self._get_consumption,
            ep.PROFILE: self._profile,
            ep.POINTS: self._grant_points,
        }
        self._setup()

    def _setup(self) -> None:
        config = self.config
        self._channels: dict[str, _Channel] = {}
        self._limiter = SlidingWindowLimiter(config.effective_rate_limits())
        self._retry_keys = RetryKeyTable(config.retry_key_ttl_s)
        self._reply_tokens = ReplyTokenBook(config.reply_token_ttl_s)
        self._faults = FaultBook()
        self._faults.rng.seed(config.seed)
        self._points = PointsLedger()
        self._recorder = Recorder()

    # --- set-up (the Python control API) ------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything: channels, records, tokens, keys, points, faults; rate limits back to config."""
        self._setup()

    def _channel(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
        return state

    def set_quota(self, channel: str, limit: int | None) -> None:
        """``None``: no limit (``{"type": "none"}``); else ``{"type": "limited", "value": limit}``."""
        if limit is not None and limit < 0:
            raise ValueError("a quota limit must not be negative")
        self._channel(channel).quota.limit = limit

    def quota(self, channel: str) -> int | None:
        return self._channel(channel).quota.limit

    def set_usage(self, channel: str, n: int) -> None:
        if n < 0:
            raise ValueError("usage must not be negative")
        self._channel(channel).quota.usage = n

    def usage(self, channel: str) -> int:
        return self._channel(channel).quota.usage

    def block(self, channel: str, *user_ids: str) -> None:
        self._channel(channel).blocked.update(user_ids)

    def unblock(self, channel: str, *user_ids: str) -> None:
        self._channel(channel).blocked.difference_update(user_ids)

    def blocked(self, channel: str) -> set[str]:
        return set(self._channel(channel).blocked)

    def set_friends(self, channel: str, user_ids: Iterable[str]) -> None:
        """The channel's friends: the audience of broadcast and narrowcast (blocked ones excluded)."""
        self._channel(channel).friends = tuple(dict.fromkeys(user_ids))

    def friends(self, channel: str) -> tuple[str, ...]:
        return self._channel(channel).friends

    def issue_reply_token(self, channel: str, user_id: str, token: str | None = None) -> str:
        """Register a reply token for ``user_id`` (``token``, or a new one); valid ``reply_token_ttl_s``."""
        return self._reply_tokens.issue(channel, user_id, self._clock(), token)

    def set_rate_limit(self, endpoint: str, limit: int, window_s: float) -> None:
        self._limiter.set_limit(check_endpoint(endpoint), RateLimit(limit, window_s))

    def rate_limits(self) -> dict[str, RateLimit]:
        return self._limiter.limits

    def inject(self, fault: Fault) -> None:
        self._faults.inject(fault, self._clock())

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[Fault]:
        return self._faults.active(self._clock())

    # --- inspection ---------------------------------------------------------------------------------------

    def requests(self, endpoint: str | None = None, channel: str | None = None) -> list[ReceivedRequest]:
        return list(self._recorder.select(endpoint, channel))

    def deliveries(self, channel: str) -> dict[str, int]:
        """Messages delivered per recipient (a request with several message objects counts once)."""
        return self._recorder.deliveries(channel)

    def duplicates(self, channel: str) -> dict[tuple[str, str], int]:
        """``(user_id, messages fingerprint) -> count`` for the same messages delivered more than once."""
        return self._recorder.duplicates(channel)

    def received(self, channel: str, user_id: str) -> dict[str, int]:
        """What ``user_id`` received: a summary of each distinct message list (texts) -> times delivered."""
        return self._recorder.received(channel, user_id)

    def blocked_attempts(self, channel: str) -> dict[str, int]:
        return self._recorder.blocked_attempts(channel)

    def count(
        self, endpoint: str | None = None, channel: str | None = None, status: int | None = None
    ) -> int:
        return sum(1 for _ in self._recorder.select(endpoint, channel, status))

    def max_in_window(
        self, endpoint: str, channel: str | None = None, window_s: float = 1.0, *, accepted_only: bool = False
    ) -> int:
        return self._recorder.max_in_window(endpoint, channel, window_s, accepted_only=accepted_only)

    def points_balance(self, channel: str, user_id: str) -> int:
        return self._points.balance(channel, user_id)

    def points_grants(self, channel: str) -> list[dict[str, Any]]:
        return [
            {**g.to_json(), "idempotencyKey": g.idempotency_key, "reference": g.request.reference}
            for g in self._points.grants(channel)
        ]

    # --- request processing -------------------------------------------------------------------------------

    def knows(self, channel: str) -> bool:
        """Whether ``channel`` is a channel id of this platform (always, when no channels are configured)."""
        return self.config.channels is None or channel in self.config.channels

    def authenticate(self, authorization: str | None) -> str | None:
        """The channel id for an ``Authorization`` header value, or None when it is not accepted."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self.config.channels is None:
            return token
        return self._channel_of_token.get(token)

    def begin(self, call: Call) -> Exchange:
        """Record the request, authenticate it, and pick the fault to apply to it (if any)."""
        record = ReceivedRequest(
            seq=self._recorder.next_seq(),
            received_at=self._clock(),
            wall_time=self._wall_clock(),
            endpoint=call.endpoint,
            channel="",
            request_id=str(uuid.uuid4()),
            retry_key=call.retry_key,
        )
        self._recorder.add(record)
        exchange = Exchange(call, record)
        if call.endpoint == ep.POINTS:  # a partner API: its channel is in the body, no bearer token
            record.channel = _peek_channel(call.body)
        else:
            channel = self.authenticate(call.authorization)
            if channel is None:
                exchange.answer = self._finish(exchange, _error(401, AUTH_FAILED))
                return exchange
            record.channel = channel
        exchange.fault = self._faults.pick(call.endpoint, record.received_at)
        if exchange.fault is not None:
            record.fault = exchange.fault.kind
        return exchange

    def refuse(self, exchange: Exchange, status: int, message: str) -> Answer:
        """Answer an error without any effect (injected errors and timeouts)."""
        return self._finish(exchange, _error(status, message))

    def mark_dropped(self, exchange: Exchange) -> None:
        """The connection was closed without an answer."""
        exchange.record.status = None

    def execute(self, exchange: Exchange) -> Answer:
        """The endpoint's effect and answer; failures have no effect and do not remember the retry key."""
        try:
            answer = self._execute(exchange)
        except _Rejected as rejected:
            answer = _error(rejected.status, rejected.message, rejected.headers, **rejected.extra)
        return self._finish(exchange, answer)

    def _finish(self, exchange: Exchange, answer: Answer) -> Answer:
        record = exchange.record
        record.status = answer.status
        record.accepted = answer.status < 300
        if answer.status >= 400:
            record.error = answer.body.get("message")
        return answer

    def _execute(self, exchange: Exchange) -> Answer:
        call, record = exchange.call, exchange.record
        now = self._clock()
        if not self._limiter.try_acquire(record.channel, call.endpoint, now):
            raise _Rejected(429, RATE_LIMITED)
        if call.endpoint in ep.RETRYABLE and call.retry_key is not None:
            self._check_retry_key(record.channel, call.retry_key, now)
        return self._handlers[call.endpoint](exchange, now)

    def _get_quota(self, exchange: Exchange, now: float) -> Answer:
        return Answer(200, self._channel(exchange.record.channel).quota.to_json())

    def _get_consumption(self, exchange: Exchange, now: float) -> Answer:
        return Answer(200, {"totalUsage": self._channel(exchange.record.channel).quota.usage})

    def _reply(self, exchange: Exchange, now: float) -> Answer:
        body, record = self._valid_body(exchange.call), exchange.record
        user = self._reply_tokens.redeemable(record.channel, body["replyToken"], now)
        if user is None:
            raise _Rejected(400, INVALID_REPLY_TOKEN)
        self._reply_tokens.redeem(body["replyToken"])
        self._send(record, (user,), body["messages"], billed=False)
        return Answer(200, {"sentMessages": self._sent_messages(body["messages"])})

    def _push(self, exchange: Exchange, now: float) -> Answer:
        body, record = self._valid_body(exchange.call), exchange.record
        self._send(record, (body["to"],), body["messages"])
        sent = self._sent_messages(body["messages"])
        self._remember_key(record, now, tuple(sent))
        return Answer(200, {"sentMessages": sent})

    def _multicast(self, exchange: Exchange, now: float) -> Answer:
        body, record = self._valid_body(exchange.call), exchange.record
        self._send(record, body["to"], body["messages"])
        self._remember_key(record, now)
        return Answer(200, {})

    def _broadcast(self, exchange: Exchange, now: float) -> Answer:
        body, record = self._valid_body(exchange.call), exchange.record
        self._send(record, self._audience(record.channel), body["messages"])
        self._remember_key(record, now)
        return Answer(200, {})

    def _narrowcast(self, exchange: Exchange, now: float) -> Answer:
        """To the friends minus blocked, at most ``limit.max`` (``recipient`` and ``filter`` are ignored)."""
        body, record = self._valid_body(exchange.call), exchange.record
        state = self._channel(record.channel)
        audience = self._audience(record.channel)
        limit = body.get("limit")
        if isinstance(limit, dict) and isinstance(limit.get("max"), int):
            audience = audience[: limit["max"]]
        delivered = self._send(record, audience, body["messages"])
        state.narrowcasts[record.request_id] = _Narrowcast(delivered, record.wall_time)
        self._remember_key(record, now)
        return Answer(202, {})

    def _audience(self, channel: str) -> tuple[str, ...]:
        """Broadcast and narrowcast go to the friends who have not blocked the channel."""
        state = self._channel(channel)
        if not state.blocked:
            return state.friends
        return tuple(u for u in state.friends if u not in state.blocked)

    def _check_retry_key(self, channel: str, key: str, now: float) -> None:
        if not is_valid_retry_key(key):
            raise _Rejected(400, RETRY_KEY_INVALID)
        accepted = self._retry_keys.accepted(channel, key, now)
        if accepted is None:
            return
        extra: dict[str, Any] = {}
        if accepted.sent_messages is not None:
            extra["sentMessages"] = list(accepted.sent_messages)
        raise _Rejected(
            409, RETRY_KEY_ACCEPTED, (("X-Line-Accepted-Request-Id", accepted.request_id),), **extra
        )

    def _remember_key(
        self, record: ReceivedRequest, now: float, sent: tuple[dict[str, Any], ...] | None = None
    ) -> None:
        if record.retry_key is not None:
            self._retry_keys.remember(
                record.channel, record.retry_key, AcceptedKey(record.request_id, now, sent)
            )

    def _valid_body(self, call: Call) -> dict[str, Any]:
        try:
            body = json.loads(call.body)
        except (ValueError, UnicodeDecodeError):
            raise _Rejected(
                400, "The request body has 1 error(s)", details=[{"message": "Invalid JSON", "property": ""}]
            ) from None
        errors = self._validator.validate(call.endpoint, body)
        if errors:
            raise _Rejected(
                400,
                f"The request body has {len(errors)} error(s)",
                details=[e.to_json() for e in errors],
            )
        return body  # type: ignore[no-any-return]

    def _send(
        self, record: ReceivedRequest, to: Iterable[str], messages: list[Any], *, billed: bool = True
    ) -> int:
        """Deliver to every non-blocked recipient within the quota; returns how many got it."""
        state = self._channel(record.channel)
        blocked = state.blocked
        recipients = tuple(to)
        if blocked:
            delivered = tuple(u for u in recipients if u not in blocked)
            refused = [u for u in recipients if u in blocked] if len(delivered) < len(recipients) else []
        else:
            delivered, refused = recipients, []
        if billed:
            if not state.quota.allows(len(delivered)):
                raise _Rejected(429, MONTHLY_LIMIT)
            state.quota.consume(len(delivered))
        self._recorder.deliver(record.channel, delivered, fingerprint(messages), summary(messages))
        if refused:
            self._recorder.blocked_attempt(record.channel, refused)
        record.recipients = delivered
        record.recipient_count = len(delivered)
        return len(delivered)

    def _sent_messages(self, messages: list[Any]) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        for message in messages:
            item = {"id": str(next(self._message_ids))}
            if message.get("type") in _QUOTABLE:
                item["quoteToken"] = secrets.token_urlsafe(24)
            sent.append(item)
        return sent

    def _profile(self, exchange: Exchange, now: float) -> Answer:
        channel, user_id = exchange.record.channel, exchange.call.user_id or ""
        if not user_id or user_id in self._channel(channel).blocked:
            raise _Rejected(404, NOT_FOUND)
        digest = hashlib.sha256(user_id.encode()).digest()
        return Answer(
            200,
            {
                "displayName": f"{_NAMES[digest[0] % len(_NAMES)]} {user_id[-4:]}",
                "userId": user_id,
                "pictureUrl": f"https://profile.line-scdn.net/emulator/{user_id}",
                "statusMessage": f"status of {user_id}",
                "language": _LANGUAGES[digest[1] % len(_LANGUAGES)],
            },
        )

    def _narrowcast_progress(self, exchange: Exchange, now: float) -> Answer:
        channel, request_id = exchange.record.channel, exchange.call.query.get("requestId")
        if not request_id:
            raise _Rejected(400, "The request parameter 'requestId' is required")
        found = self._channel(channel).narrowcasts.get(request_id)
        if found is None:
            raise _Rejected(404, NOT_FOUND)
        return Answer(
            200,
            {
                "phase": "succeeded",
                "successCount": found.target,
                "failureCount": 0,
                "targetCount": found.target,
                "acceptedTime": _iso(found.accepted_at),
                "completedTime": _iso(found.accepted_at),
            },
        )

    def _grant_points(self, exchange: Exchange, now: float) -> Answer:
        call, record = exchange.call, exchange.record
        if not call.idempotency_key:
            raise _Rejected(400, "The Idempotency-Key header is required")
        try:
            request, errors = GrantRequest.parse(json.loads(call.body))
        except (ValueError, UnicodeDecodeError):
            request, errors = None, [("Invalid JSON", "")]
        if request is not None and not self.knows(request.channel_id):
            request, errors = None, [("is not a channel of this platform", "channelId")]
        if request is None:
            raise _Rejected(
                400,
                f"The request body has {len(errors)} error(s)",
                details=[{"message": m, "property": p} for m, p in errors],
            )
        try:
            grant, replayed = self._points.grant(call.idempotency_key, request, record.wall_time)
        except IdempotencyConflict as conflict:
            raise _Rejected(422, str(conflict)) from None
        if not replayed:
            record.recipients = (request.user_id,)
            record.recipient_count = 1
        headers = (("Idempotent-Replayed", "true"),) if replayed else ()
        return Answer(200, grant.to_json(), headers)


def _peek_channel(body: bytes) -> str:
    """The ``channelId`` of a points grant body (rate limits and records are per channel), or ""."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    value = parsed.get("channelId") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else ""

"""What the emulator received and delivered, for tests and benchmarks to assert on.

Sized for benchmarks: a recipient costs one dict entry per distinct message it got (counters per message
fingerprint, a small int standing for the hash of the messages' canonical JSON), and a pointer in its
request's recipient tuple, which shares the id string with the counter the first time the user is seen.
A user's delivery total is summed over the fingerprints when asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


def fingerprint(messages: Any) -> str:
    """A short hash of the canonical JSON of a request's ``messages``: same content, same fingerprint."""
    canonical = json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def summary(messages: Any) -> str:
    """A readable line for a request's ``messages``: each text (or ``<type>``), joined with `` | ``."""
    parts: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            text = message.get("text")
            parts.append(text if isinstance(text, str) else f"<{message.get('type')}>")
    return " | ".join(parts)


@dataclass(slots=True)
class ReceivedRequest:
    """One request as the emulator saw it. ``status`` None: no HTTP answer (dropped, or still pending)."""

    seq: int
    received_at: float  # the emulator's monotonic clock
    wall_time: float  # seconds since the epoch
    endpoint: str
    channel: str  # "" when the request failed authentication
    request_id: str
    retry_key: str | None = None
    status: int | None = None
    accepted: bool = False  # answered 2xx (or would have, if dropped): processed, whatever the client saw
    recipient_count: int = 0
    recipients: tuple[str, ...] = ()  # the users it was delivered to (sends that were accepted)
    fault: str | None = None
    error: str | None = None  # the ``message`` of an error answer

    def to_json(self, *, with_recipients: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "receivedAt": self.received_at,
            "wallTime": self.wall_time,
            "endpoint": self.endpoint,
            "channel": self.channel,
            "requestId": self.request_id,
            "retryKey": self.retry_key,
            "status": self.status,
            "accepted": self.accepted,
            "recipientCount": self.recipient_count,
            "fault": self.fault,
            "error": self.error,
        }
        if with_recipients:
            out["recipients"] = list(self.recipients)
        return out


@dataclass(slots=True)
class _ChannelLog:
    # fingerprint id -> user -> deliveries of those messages; a user's total is the sum over fingerprints
    by_fingerprint: dict[int, dict[str, int]] = field(default_factory=dict)
    blocked_attempts: dict[str, int] = field(default_factory=dict)


def _count(counter: dict[str, int], user_ids: Iterable[str]) -> None:
    get = counter.get
    for user in user_ids:
        counter[user] = get(user, 0) + 1


class Recorder:
    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._channels: dict[str, _ChannelLog] = {}
        self._fingerprint_ids: dict[str, int] = {}
        self._fingerprints: list[str] = []
        self._summaries: list[str] = []  # per fingerprint id: what the messages say (see ``summary``)

    def add(self, request: ReceivedRequest) -> None:
        self.requests.append(request)

    def next_seq(self) -> int:
        return len(self.requests) + 1

    def _log(self, channel: str) -> _ChannelLog:
        log = self._channels.get(channel)
        if log is None:
            log = self._channels[channel] = _ChannelLog()
        return log

    def deliver(
        self, channel: str, user_ids: tuple[str, ...], messages_fingerprint: str, summary_text: str = ""
    ) -> None:
        log = self._log(channel)
        fp_id = self._fingerprint_ids.get(messages_fingerprint)
        if fp_id is None:
            fp_id = self._fingerprint_ids[messages_fingerprint] = len(self._fingerprints)
            self._fingerprints.append(messages_fingerprint)
            self._summaries.append(summary_text)
        per_fp = log.by_fingerprint.get(fp_id)
        if per_fp is None:
            per_fp = log.by_fingerprint[fp_id] = {}
        _count(per_fp, user_ids)

    def blocked_attempt(self, channel: str, user_ids: Iterable[str]) -> None:
        _count(self._log(channel).blocked_attempts, user_ids)

    # --- queries -------------------------------------------------------------------------------------------

    def deliveries(self, channel: str) -> dict[str, int]:
        log = self._channels.get(channel)
        counters = list(log.by_fingerprint.values()) if log else []
        if not counters:
            return {}
        largest = max(counters, key=len)
        total = dict(largest)
        get = total.get
        for counter in counters:
            if counter is not largest:
                for user, n in counter.items():
                    total[user] = get(user, 0) + n
        return total

    def duplicates(self, channel: str) -> dict[tuple[str, str], int]:
        log = self._channels.get(channel)
        if log is None:
            return {}
        out: dict[tuple[str, str], int] = {}
        for fp_id, counts in log.by_fingerprint.items():
            fp = self._fingerprints[fp_id]
            for user, n in counts.items():
                if n > 1:
                    out[(user, fp)] = n
        return out

    def received(self, channel: str, user_id: str) -> dict[str, int]:
        """``summary of the messages -> deliveries`` for one recipient (what they saw, and how often)."""
        log = self._channels.get(channel)
        out: dict[str, int] = {}
        for fp_id, counts in log.by_fingerprint.items() if log else ():
            n = counts.get(user_id)
            if n:
                text = self._summaries[fp_id]
                out[text] = out.get(text, 0) + n
        return out

    def blocked_attempts(self, channel: str) -> dict[str, int]:
        log = self._channels.get(channel)
        return dict(log.blocked_attempts) if log else {}

    def select(
        self,
        endpoint: str | None = None,
        channel: str | None = None,
        status: int | None = None,
        *,
        accepted: bool | None = None,
    ) -> Iterator[ReceivedRequest]:
        for r in self.requests:
            if (
                (endpoint is None or r.endpoint == endpoint)
                and (channel is None or r.channel == channel)
                and (status is None or r.status == status)
                and (accepted is None or r.accepted == accepted)
            ):
                yield r

    def max_in_window(
        self, endpoint: str, channel: str | None = None, window_s: float = 1.0, *, accepted_only: bool = False
    ) -> int:
        """The most requests received within any ``window_s`` seconds (arrival times, sliding window)."""
        times = sorted(
            r.received_at for r in self.select(endpoint, channel, accepted=True if accepted_only else None)
        )
        best = 0
        start = 0
        for i, t in enumerate(times):
            while times[start] <= t - window_s:  # the window is (t - window_s, t], as the rate limiter's
                start += 1
            best = max(best, i + 1 - start)
        return best

    def clear(self) -> None:
        self.requests.clear()
        self._channels.clear()
        self._fingerprint_ids.clear()
        self._fingerprints.clear()
        self._summaries.clear()

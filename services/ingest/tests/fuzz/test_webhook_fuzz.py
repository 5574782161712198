"""Property-based fuzzing of ``POST /line/webhook/{channel}`` against the real Kafka.

Each test runs one ingest app for all of its examples. Per example the answer must never be a 5xx (an
exception escaping the app fails the example too: the test client raises it); a bad signature always gives
401; a signed body that is not a webhook gives 400 (413 when too large). At the end (the ``fuzz`` fixture's
teardown) the app must still accept a valid webhook, and ``line.events.v1`` must hold exactly the events of
the accepted requests, each a valid ``LineEventReceived``, and none of the rejected ones.
"""

from __future__ import annotations

import base64
import copy
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tagline_contracts import topics
from tagline_contracts.envelope import LineEventReceived, new_event_id
from tagline_contracts.signature import sign
from tagline_testing.apifuzz import examples
from tagline_testing.kafka import read_topic
from tagline_testing.webhook import WebhookBuilder
from tagline_testing.webhook_samples import SAMPLES

pytestmark = pytest.mark.integration

FUZZ = settings(
    max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SECRET = "0123456789abcdef0123456789abcdef"  # the MAIN channel of the ingest conftest
OTHER_SECRET = "fedcba9876543210fedcba9876543210"  # a configured channel, but not this one
URL = "/line/webhook/1234567890"
MAX_BODY = 1024 * 1024  # the default TAGLINE_INGEST_MAX_BODY_BYTES
DESTINATION = "U" + "d" * 32


@dataclass
class Fuzzed:
    """What the examples of one test sent, to check against the topic at the end."""

    client: httpx.AsyncClient
    accepted_events: int = 0
    accepted_ids: set[str] = field(default_factory=set)
    rejected_ids: set[str] = field(default_factory=set)
    statuses: dict[int, int] = field(default_factory=dict)

    async def post(self, body: bytes, headers: dict[str, str] | None = None, *, url: str = URL) -> int:
        response = await self.client.post(url, content=body, headers=headers or {})
        status = response.status_code
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert status < 500, (status, response.text, body[:200])
        if status != 200:
            assert response.json()["detail"], "a rejection says why"
        return status

    async def signed(self, body: bytes, *, ids: list[str] | None = None) -> int:
        """POST ``body`` correctly signed; note which of ``ids`` must (not) reach Kafka."""
        status = await self.post(body, {"x-line-signature": sign(SECRET, body)})
        if status == 200:
            events = json.loads(body)["events"]
            self.accepted_events += len(events)
            self.accepted_ids.update(e["webhookEventId"] for e in events if _plain_id(e))
        else:
            self.rejected_ids.update(ids or [])
        return status


def _plain_id(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and isinstance(event.get("webhookEventId"), str)
        and bool(event["webhookEventId"])
    )


@pytest.fixture
async def fuzz(kafka_bootstrap: str, start_ingest: Any) -> AsyncIterator[Fuzzed]:
    async with start_ingest(kafka_bootstrap_servers=kafka_bootstrap, max_body_bytes=MAX_BODY) as ingest:
        fuzzed = Fuzzed(ingest.client)
        yield fuzzed
        # Still serving after everything above: a valid webhook is accepted and published.
        builder = WebhookBuilder(SECRET)
        last = builder.text("U" + "e" * 32, "still here")
        assert await fuzzed.signed(builder.body([last])) == 200
        assert (await ingest.client.get("/healthz")).status_code == 200
        topic = ingest.settings.topic(topics.LINE_EVENTS)
    records = await read_topic(kafka_bootstrap, topic, count=fuzzed.accepted_events, settle_s=1.0)
    received = [LineEventReceived.model_validate_json(r.value) for r in records]
    published = {m.event_id for m in received}
    assert len(records) == fuzzed.accepted_events, (len(records), fuzzed.accepted_events, fuzzed.statuses)
    assert fuzzed.accepted_ids <= published
    assert last["webhookEventId"] in published
    assert not fuzzed.rejected_ids & published, "nothing of a rejected request is published"


# ---- strategies ------------------------------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: also integers beyond 64 bits
    | st.floats()  # also NaN and ±Infinity (written as the non-JSON tokens NaN, Infinity)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
HUGE_STRINGS = st.integers(1_000, 20_000).map(lambda n: "長" * n) | st.text(min_size=1, max_size=3).map(
    lambda s: s * 5_000
)
INVALID_UTF8 = st.sampled_from(
    [b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xa0\xa1", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xed\xa0\x80",
     b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe6\x88"]
)  # fmt: skip


def dumps(value: Any, *, ascii_only: bool = False) -> bytes:
    """JSON as a careless producer writes it (NaN/Infinity tokens included)."""
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")


def fresh_event(name: str) -> dict[str, Any]:
    event = copy.deepcopy(SAMPLES[name][0])
    event["webhookEventId"] = new_event_id()
    return event


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``value`` (keys and indexes), the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, (*prefix, index))
    return found


def _parent(root: Any, path: tuple[Any, ...]) -> Any:
    node = root
    for step in path[:-1]:
        node = node[step]
    return node


def _is_number(root: Any, path: tuple[Any, ...]) -> bool:
    value = _parent(root, path)[path[-1]] if path else root
    return isinstance(value, int | float) and not isinstance(value, bool)


@st.composite
def mutated_webhooks(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A valid webhook (1-3 sample events) with 1-3 random mutations; also its events' original ids."""
    names = draw(st.lists(st.sampled_from(sorted(SAMPLES)), min_size=1, max_size=3))
    events = [fresh_event(name) for name in names]
    ids = [e["webhookEventId"] for e in events]
    body: dict[str, Any] = {"destination": DESTINATION, "events": events}
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(body)[1:]))
        parent = _parent(body, path)
        operation = draw(st.sampled_from(["replace", "delete", "huge", "type", "add", "timestamp", "number"]))
        if operation == "replace":
            parent[path[-1]] = draw(JSON_VALUES)
        elif operation == "delete":
            del parent[path[-1]]
        elif operation == "huge":
            parent[path[-1]] = draw(HUGE_STRINGS)
        elif operation == "type" and isinstance(parent[path[-1]], dict):
            parent[path[-1]]["type"] = draw(st.text(max_size=12) | st.sampled_from(["message", "follow"]))
        elif operation == "add" and isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=8))] = draw(JSON_VALUES)
        elif operation == "timestamp" and events and isinstance(events[0], dict):
            events[0]["timestamp"] = draw(st.integers() | st.sampled_from([0, -1, 2**63, 10**17]))
        elif operation == "number" and (numbers := [p for p in paths(body) if _is_number(body, p)]):
            where = draw(st.sampled_from(numbers))
            _parent(body, where)[where[-1]] = draw(
                st.sampled_from([math.nan, math.inf, -math.inf, 10**40, -(10**40), 1e308, 0.5, -1])
            )
        if not isinstance(body.get("events"), list):
            break
    return body, ids


def garbled_signatures(body: bytes) -> st.SearchStrategy[str | bytes | None]:
    right = sign(SECRET, body)
    raw = base64.b64decode(right)
    return st.one_of(
        st.none(),
        st.just(""),
        st.just(sign(OTHER_SECRET, body)),
        st.just(sign(SECRET, body + b" ")),
        st.just(right[:-2]),
        st.just(right + "="),
        st.just(base64.urlsafe_b64encode(raw).decode() if "+" in right or "/" in right else right.lower()),
        st.integers(0, len(raw) - 1).map(
            lambda i: base64.b64encode(raw[:i] + bytes([raw[i] ^ 1]) + raw[i + 1 :]).decode()
        ),
        st.text(max_size=60).map(str.encode),  # UTF-8 on the wire, read as latin-1
        st.binary(max_size=60),
    )


# ---- properties ------------------------------------------------------------------------------------------


@FUZZ
@given(body=st.binary(max_size=2_000), signed=st.booleans())
async def test_random_bytes(fuzz: Fuzzed, body: bytes, signed: bool) -> None:
    if signed:
        assert await fuzz.signed(body) in {200, 400}
    else:
        assert await fuzz.post(body) == 401


@FUZZ
@given(value=JSON_VALUES, ascii_only=st.booleans())
async def test_random_json_values(fuzz: Fuzzed, value: Any, ascii_only: bool) -> None:
    body = dumps(value, ascii_only=ascii_only)
    assert await fuzz.signed(body) == 400  # a random value is never a webhook (it has no "destination")


@settings(FUZZ, max_examples=examples(500))
@given(webhook=mutated_webhooks(), ascii_only=st.booleans())
async def test_mutated_webhooks_are_accepted_whole_or_rejected_whole(
    fuzz: Fuzzed, webhook: tuple[dict[str, Any], list[str]], ascii_only: bool
) -> None:
    body, ids = webhook
    encoded = dumps(body, ascii_only=ascii_only)
    status = await fuzz.signed(encoded, ids=ids)
    assert status in {200, 400, 413}
    if len(encoded) > MAX_BODY:
        assert status == 413


NUMERIC_SAMPLES = sorted(
    n for n, (event, _) in SAMPLES.items() if len([p for p in paths(event) if _is_number(event, p)]) > 1
)
ODD_NUMBERS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -0.0, 2**53 + 1, 2**64, -(2**63) - 1, 10**40]
)


@FUZZ
@given(
    name=st.sampled_from(NUMERIC_SAMPLES),
    which=st.integers(0, 20),
    value=st.sampled_from([math.nan, math.inf, -math.inf]) | ODD_NUMBERS | st.integers() | st.floats(),
)
@example(name="message-location", which=1, value=math.nan)  # the fields that are floats: latitude,
@example(name="message-location", which=2, value=-math.inf)  # longitude
async def test_odd_numbers_in_numeric_fields(fuzz: Fuzzed, name: str, which: int, value: Any) -> None:
    """NaN, ±Infinity (not JSON, yet parsed), huge and negative numbers where LINE sends numbers."""
    event = fresh_event(name)
    numbers = [p for p in paths(event) if _is_number(event, p)]
    where = numbers[which % len(numbers)]
    _parent(event, where)[where[-1]] = value
    body = dumps({"destination": DESTINATION, "events": [event]})
    assert await fuzz.signed(body, ids=[event["webhookEventId"]]) in {200, 400}


@FUZZ
@given(data=st.data(), names=st.lists(st.sampled_from(sorted(SAMPLES)), min_size=1, max_size=3))
async def test_wrong_or_missing_signatures_on_valid_bodies(
    fuzz: Fuzzed, data: st.DataObject, names: list[str]
) -> None:
    events = [fresh_event(name) for name in names]
    body = dumps({"destination": DESTINATION, "events": events})
    signature = data.draw(garbled_signatures(body))
    headers: dict[str, Any] = {} if signature is None else {"x-line-signature": signature}
    assert await fuzz.post(body, headers) == 401
    fuzz.rejected_ids.update(e["webhookEventId"] for e in events)
    # The same body under a channel that is not configured: 404 whatever the signature.
    assert await fuzz.post(body, headers, url="/line/webhook/9" + names[0]) == 404


@FUZZ
@given(
    names=st.lists(st.sampled_from(sorted(SAMPLES)), min_size=1, max_size=2),
    garbage=INVALID_UTF8,
    where=st.floats(0, 1),
)
async def test_invalid_utf8_with_a_correct_signature(
    fuzz: Fuzzed, names: list[str], garbage: bytes, where: float
) -> None:
    events = [fresh_event(name) for name in names]
    body = dumps({"destination": DESTINATION, "events": events})
    # Anywhere in the body, inside a string or between tokens: never valid UTF-8 JSON.
    position = round(where * len(body))
    assert (
        await fuzz.signed(
            body[:position] + garbage + body[position:], ids=[e["webhookEventId"] for e in events]
        )
        == 400
    )


@settings(FUZZ, max_examples=examples(100))
@given(
    depth=st.integers(200, 100_000),
    opener=st.sampled_from([b"[", b'{"a":', b'{"destination":"U","events":[', b" [\n"]),
    where=st.sampled_from(["body", "event"]),
)
@example(depth=100_000, opener=b"[", where="body")
@example(depth=100_000, opener=b"[", where="event")
async def test_deeply_nested_json(fuzz: Fuzzed, depth: int, opener: bytes, where: str) -> None:
    closer = b"]" if opener.strip() == b"[" else b"}" if opener == b'{"a":' else b"]}"
    nested = opener * depth + b"0" + closer * depth
    if where == "event":
        event = fresh_event("message-text")
        body = dumps({"destination": DESTINATION, "events": [event, 0]}).replace(b",0]", b"," + nested + b"]")
        ids = [event["webhookEventId"]]
    else:
        body, ids = nested, []
    status = await fuzz.signed(body, ids=ids)
    assert status == (413 if len(body) > MAX_BODY else 400)


# ---- huge bodies and odd headers: examples chosen by hand ------------------------------------------------


async def _chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def test_huge_bodies_get_413_however_they_arrive(fuzz: Fuzzed) -> None:
    builder = WebhookBuilder(SECRET)
    big = builder.text("U" + "1" * 32, "大" * MAX_BODY)
    body = builder.body([big])
    signature = {"x-line-signature": sign(SECRET, body)}
    assert await fuzz.post(body, signature) == 413  # with its content-length
    assert await fuzz.post(b"[" * (10 * 1024 * 1024), signature) == 413  # 10 MiB
    # Streamed without a content-length, and with a content-length that understates it.
    response = await fuzz.client.post(URL, content=_chunks(body, 4096), headers=signature)
    assert response.status_code == 413
    response = await fuzz.client.post(
        URL, content=_chunks(body, 4096), headers={**signature, "content-length": "10"}
    )
    assert response.status_code == 413
    fuzz.rejected_ids.add(big["webhookEventId"])

    # Exactly at the limit (padded with JSON whitespace) is accepted.
    at_limit = builder.body([builder.text("U" + "1" * 32, "x" * (MAX_BODY - 1024))])
    at_limit += b" " * (MAX_BODY - len(at_limit))
    assert await fuzz.signed(at_limit) == 200


@FUZZ
@given(
    content_length=st.text(st.characters(max_codepoint=255), max_size=8)
    | st.sampled_from(["²", "¹²³", "٣", "-1", "+5", " 5", "1e3", "0x10", "9" * 5000, "0" * 5000 + "1"]),
)
async def test_odd_content_length_headers(fuzz: Fuzzed, content_length: str) -> None:
    body = dumps({"destination": DESTINATION, "events": []})
    headers = {b"x-line-signature": sign(SECRET, body).encode(), b"content-length": content_length.encode()}
    response = await fuzz.client.post(URL, content=body, headers=headers)
    assert response.status_code in {200, 400, 413}, response.text


async def test_an_event_too_large_for_one_kafka_record_is_413_and_nothing_is_published(fuzz: Fuzzed) -> None:
    """Within the body limit, but the envelope around it would pass Kafka's 1 MiB: was a 503 forever."""
    builder = WebhookBuilder(SECRET)
    small = builder.text("U" + "1" * 32, "first")
    big = builder.text("U" + "2" * 32, "")
    big["message"]["text"] = "x" * (MAX_BODY - len(builder.body([small, big])))
    body = builder.body([small, big])
    assert len(body) == MAX_BODY
    assert await fuzz.signed(body, ids=[small["webhookEventId"], big["webhookEventId"]]) == 413

    # A few kilobytes less fits, and is published whole.
    fits = builder.text("U" + "2" * 32, "x" * (MAX_BODY - 4096))
    assert await fuzz.signed(builder.body([fits])) == 200

"""Inspection figures: deliveries, duplicates, blocked attempts, max_in_window, at benchmark scale."""

from __future__ import annotations

import time

from tagline_line_emulator.records import ReceivedRequest, Recorder, fingerprint, summary


def request(
    recorder: Recorder, endpoint: str, at: float, *, channel: str = "c", accepted: bool = True
) -> None:
    recorder.add(
        ReceivedRequest(
            seq=recorder.next_seq(),
            received_at=at,
            wall_time=at,
            endpoint=endpoint,
            channel=channel,
            request_id=f"r{at}",
            status=200 if accepted else 429,
            accepted=accepted,
        )
    )


def test_fingerprint_ignores_key_order_but_not_content() -> None:
    a = [{"type": "text", "text": "hi"}]
    assert fingerprint(a) == fingerprint([{"text": "hi", "type": "text"}])
    assert fingerprint(a) != fingerprint([{"type": "text", "text": "hi!"}])


def test_duplicates_are_same_messages_to_same_user_only() -> None:
    recorder = Recorder()
    sale, news = fingerprint(["sale"]), fingerprint(["news"])
    recorder.deliver("c", ("U1", "U2"), sale)
    recorder.deliver("c", ("U1",), news)
    recorder.deliver("c", ("U1",), sale)
    recorder.deliver("other", ("U2",), sale)
    assert recorder.deliveries("c") == {"U1": 3, "U2": 1}
    assert recorder.duplicates("c") == {("U1", sale): 2}
    assert recorder.duplicates("other") == {}
    assert recorder.deliveries("nobody") == {}


def test_blocked_attempts_are_counted_per_user() -> None:
    recorder = Recorder()
    recorder.blocked_attempt("c", ["U1", "U2", "U1"])
    assert recorder.blocked_attempts("c") == {"U1": 2, "U2": 1}


def test_max_in_window_finds_the_densest_window() -> None:
    recorder = Recorder()
    for at in (0.0, 0.5, 0.9, 1.2, 1.3, 1.4, 3.0):
        request(recorder, "push", at)
    request(recorder, "push", 1.35, accepted=False)
    request(recorder, "push", 1.36, channel="other")
    # (0.4, 1.4] holds 0.5, 0.9, 1.2, 1.3, 1.35, 1.4 (+ the other channel's 1.36)
    assert recorder.max_in_window("push", "c", 1.0) == 6
    assert recorder.max_in_window("push", "c", 1.0, accepted_only=True) == 5
    assert recorder.max_in_window("push", None, 1.0) == 7
    assert recorder.max_in_window("push", "c", 0.05) == 2
    assert recorder.max_in_window("multicast", "c", 1.0) == 0


def test_a_million_recipients_stay_fast() -> None:
    recorder = Recorder()
    fp = fingerprint(["campaign"])
    ids = [f"U{i:032x}" for i in range(1_000_000)]
    started = time.perf_counter()
    for i in range(0, len(ids), 500):
        recorder.deliver("c", tuple(ids[i : i + 500]), fp)
    recorder.deliver("c", tuple(ids[:10]), fp)  # ten users get the campaign twice
    found = recorder.duplicates("c")
    elapsed = time.perf_counter() - started
    assert len(found) == 10
    assert len(recorder.deliveries("c")) == 1_000_000
    assert elapsed < 5.0, elapsed


def test_received_says_what_each_recipient_saw_and_how_often() -> None:
    recorder = Recorder()
    welcome = [{"type": "text", "text": "歡迎"}]
    offer = [{"type": "text", "text": "8 折"}, {"type": "sticker", "packageId": "1", "stickerId": "2"}]
    recorder.deliver("C", ("U1", "U2"), fingerprint(welcome), summary(welcome))
    recorder.deliver("C", ("U1",), fingerprint(offer), summary(offer))
    recorder.deliver("C", ("U1",), fingerprint(offer), summary(offer))
    assert recorder.received("C", "U1") == {"歡迎": 1, "8 折 | <sticker>": 2}
    assert recorder.received("C", "U2") == {"歡迎": 1}
    assert recorder.received("C", "U3") == {} and recorder.received("other", "U1") == {}

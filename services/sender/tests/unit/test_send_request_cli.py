"""``python -m tagline_sender.request`` refuses what the sender would refuse, naming the field, before any
Kafka connection."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from tagline_platform.settings import ServiceSettings
from tagline_sender.request import run

GOOD: dict[str, Any] = {
    "idempotency_key": "hello-1",
    "category": "marketing",
    "messages": [{"type": "text", "text": "hi"}],
    "target": {"kind": "user", "user_id": "U1"},
}
# no Kafka answers here: a refused request must not get as far as connecting
NOWHERE = ServiceSettings(kafka_bootstrap_servers="127.0.0.1:1", topic_namespace="ns.")


async def command(body: str, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await run([*argv, "-"], settings=NOWHERE, stdin=io.StringIO(body), out=out)
    return status, out.getvalue()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"messages": [{"type": "txt", "text": "hi"}]}, "messages[0]"),
        ({"messages": [{"type": "text", "text": "x" * 5_001}]}, "messages[0].text"),
        ({"messages": [{"text": "hi"}]}, "messages"),
        ({"target": {"kind": "user"}}, "target.user.user_id"),
        ({"category": "spam"}, "category"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_a_request_the_sender_would_refuse_is_not_published(change: dict[str, Any], named: str) -> None:
    status, output = await command(json.dumps(GOOD | change), "--channel", "1234567890")
    assert status == 1
    assert output.startswith("not published: ") and named in output, output


async def test_bad_json_an_empty_channel_and_the_dry_run() -> None:
    status, output = await command("{", "--channel", "1234567890")
    assert (status, output.startswith("not published: not JSON")) == (1, True)
    status, output = await command(json.dumps(GOOD), "--channel", "")
    assert status == 1 and "channel_id" in output, output
    status, output = await command(json.dumps(GOOD), "--channel", "1234567890", "--dry-run")
    assert status == 0, output
    header, value = output.splitlines()
    assert header == "valid; would publish to ns.send.requests.v1 with key 1234567890:U1:"
    assert json.loads(value)["schema"] == "SendMessages"

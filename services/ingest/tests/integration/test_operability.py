"""Operability of the ingest process: SIGTERM finishes what is in flight, closes the producer and exits 0."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tagline_testing.processes import ServiceProcess, is_error
from tagline_testing.webhook import WebhookBuilder

pytestmark = pytest.mark.integration

CHANNEL, SECRET = "1234567890", "s3cret"


async def test_sigterm_stops_ingest_cleanly_with_exit_status_0(
    kafka_bootstrap: str, namespace: str, tmp_path: Path
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "TAGLINE_TOPIC_NAMESPACE": namespace,
        "TAGLINE_INGEST_CHANNEL_SECRETS": json.dumps({CHANNEL: SECRET}),
    }
    ingest = ServiceProcess("ingest", env, tmp_path)
    try:
        await ingest.wait_ready()
        builder = WebhookBuilder(SECRET)
        signed = builder.sign_body(builder.body([builder.follow("U1")]))
        async with httpx.AsyncClient(base_url=ingest.url) as client:
            response = await client.post(
                f"/line/webhook/{CHANNEL}", content=signed.body, headers=signed.headers
            )
        assert response.status_code == 200
        code, took = ingest.terminate(20)
    finally:
        ingest.kill()

    assert code == 0, ingest.output()
    assert took < 15
    logs = ingest.logs()
    assert all("raw" not in entry for entry in logs), ingest.output()
    assert [e for e in logs if is_error(e)] == []
    assert [e["logger"] for e in logs if e.get("msg") == "stopped cleanly"] == ["tagline_ingest.app"]

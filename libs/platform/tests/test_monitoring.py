"""deploy/monitoring/ fits the code and docker-compose.yml: Prometheus scrapes every service where compose
runs it, Grafana's provisioning points at the dashboard and data source, and every metric a dashboard panel
asks for is one a service exposes on /metrics (so renaming a metric fails here, not on a blank panel).

Here rather than under deploy/ because pytest collects libs/, services/ and tools/.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
SERVICES = {"ingest": 8080, "sender": 8081, "tagger": 8082, "liveshop": 8083}
_METRIC = re.compile(r"\b(tagline_[a-z0-9_]+|up)\b")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def compose() -> dict[str, Any]:
    services: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")["services"]
    return services


def dashboards() -> dict[str, Any]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))  # panels of collapsed rows
    return found


def exposed(text: str) -> set[str]:
    """The series names a Prometheus text exposition can have, from its ``# TYPE`` lines."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            names.update(name + suffix for suffix in _SUFFIXES.get(kind, ()))
    return names


@pytest.fixture
async def metric_names() -> AsyncIterator[set[str]]:
    """Every series name the four services expose on /metrics (built, not started: no servers needed)."""
    from tagline_ingest.app import create_app as create_ingest  # noqa: PLC0415
    from tagline_ingest.settings import IngestSettings  # noqa: PLC0415
    from tagline_liveshop.app import create_app as create_liveshop  # noqa: PLC0415
    from tagline_liveshop.settings import LiveshopSettings  # noqa: PLC0415
    from tagline_sender.app import create_app as create_sender  # noqa: PLC0415
    from tagline_sender.settings import SenderSettings  # noqa: PLC0415
    from tagline_tagger.app import create_app as create_tagger  # noqa: PLC0415
    from tagline_tagger.settings import TaggerSettings  # noqa: PLC0415

    sender = create_sender(SenderSettings())
    liveshop = create_liveshop(LiveshopSettings())
    tagger = create_tagger(TaggerSettings())
    apps: dict[str, Any] = {
        "ingest": create_ingest(IngestSettings()),
        "sender": sender,
        "tagger": tagger,
        "liveshop": liveshop,
    }
    names: set[str] = set()
    try:
        for name, app in apps.items():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                response = await client.get("/metrics")
            assert response.status_code == 200, name
            found = exposed(response.text)
            assert any(n.startswith(f"tagline_{name}_") for n in found), name
            names |= found
        yield names
    finally:
        await sender.state.service.line.close()
        await liveshop.state.service.gateway.close()
        for app in (sender, liveshop, tagger):
            await app.state.service.mongo.close()


def test_prometheus_scrapes_every_service_where_compose_runs_it() -> None:
    config = load_yaml(MONITORING / "prometheus.yml")
    [tagline] = [job for job in config["scrape_configs"] if job["job_name"] == "tagline"]
    targets = {
        group["labels"]["service"]: target
        for group in tagline["static_configs"]
        for target in group["targets"]
    }
    services = compose()
    for name, port in SERVICES.items():
        assert targets[name] == f"{name}:{port}"
        assert f"{port}:{port}" in services[name]["ports"]  # the container port the service listens on
    assert tagline["metrics_path"] == "/metrics"


def test_monitoring_runs_only_with_its_compose_profile_and_mounts_what_exists() -> None:
    services = compose()
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), volume
    for name, service in services.items():
        if name not in ("prometheus", "grafana"):
            assert "profiles" not in service, name
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider = load_yaml(MONITORING / "grafana" / "provisioning" / "dashboards" / "tagline.yml")
    [files] = provider["providers"]
    assert mounts["./deploy/monitoring/grafana/dashboards"] == files["options"]["path"]
    assert mounts["./deploy/monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    prometheus_mounts = [v.split(":")[1] for v in services["prometheus"]["volumes"]]
    assert "/etc/prometheus/prometheus.yml" in prometheus_mounts


def test_dashboards_use_the_provisioned_data_source_with_unique_ids() -> None:
    sources = load_yaml(MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    [source] = sources["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["type"] == "prometheus"
    found = dashboards()
    assert found
    for name, dashboard in found.items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)), name
        for panel in panels(dashboard):
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == source["uid"], panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == source["uid"], panel["title"]


async def test_every_metric_on_a_dashboard_is_exposed_by_a_service(metric_names: set[str]) -> None:
    used: dict[str, set[str]] = {}
    for dashboard in dashboards().values():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                for metric in _METRIC.findall(target["expr"]):
                    used.setdefault(metric, set()).add(panel["title"])
    unknown = {m: sorted(titles) for m, titles in used.items() if m != "up" and m not in metric_names}
    assert not unknown, f"dashboard panels ask for metrics no service exposes: {unknown}"
    # what the overview is for
    for metric in (
        "tagline_ingest_webhook_requests_total",
        "tagline_ingest_events_published_total",
        "tagline_sender_deliveries_total",
        "tagline_sender_quota_remaining",
        *(
            f"tagline_{service}_{name}"
            for service in ("tagger", "sender", "liveshop")
            for name in (
                "consumer_lag",
                "records_handled_total",
                "records_failed_total",
                "records_dead_lettered_total",
            )
        ),
    ):
        assert metric in used, metric

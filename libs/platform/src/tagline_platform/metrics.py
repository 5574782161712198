"""Prometheus helpers: one registry per service instance, and a Starlette ``/metrics`` endpoint.

A registry per instance (rather than the global one) lets tests create several apps in one process.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Metrics:
    """Factory for namespaced metrics bound to one registry."""

    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._namespace = f"tagline_{service}"

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, namespace=self._namespace, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, namespace=self._namespace, registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        return Histogram(
            name, doc, labels, namespace=self._namespace, registry=self.registry, buckets=buckets
        )

    async def endpoint(self, _request: Request) -> Response:
        """The ``/metrics`` route (Prometheus text format)."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

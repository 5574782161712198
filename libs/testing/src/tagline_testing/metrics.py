"""Reading a service's ``/metrics`` text in tests."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` (e.g. ``tagline_tagger_consumer_lag``): its labels and value."""
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly these ``labels``; ``None`` if there is none."""
    return next((value for found, value in samples(text, name) if found == labels), None)

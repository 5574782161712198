"""LINE's OpenAPI documents, package data of ``tagline-contracts`` (see ``README.md`` beside this file).

They are Apache-2.0 data files from LINE's public repository github.com/line/line-openapi (``LICENSE`` beside
them), found with :mod:`importlib.resources`, so they work from a wheel as well as from the repository.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

MESSAGING_API = "messaging-api.yml"
WEBHOOK = "webhook.yml"
NAMES = (MESSAGING_API, WEBHOOK, "channel-access-token.yml", "insight.yml", "manage-audience.yml")


def spec(name: str) -> Traversable:
    """The document ``name`` (one of :data:`NAMES`), e.g. ``spec(MESSAGING_API).read_bytes()``."""
    if name not in NAMES:
        raise FileNotFoundError(f"no LINE OpenAPI document {name!r}; there are {', '.join(NAMES)}")
    return files(__name__) / name

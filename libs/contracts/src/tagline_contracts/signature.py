"""LINE's webhook signature: ``x-line-signature`` = Base64(HMAC-SHA256(channel secret, raw body)).

The one implementation in the repo: ingest verifies with it, test builders sign with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(channel_secret: str | bytes, body: bytes) -> str:
    """The signature LINE puts in ``x-line-signature`` for ``body``."""
    key = channel_secret.encode() if isinstance(channel_secret, str) else channel_secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode("ascii")


def verify(channel_secret: str | bytes, body: bytes, signature: str | None) -> bool:
    """True when ``signature`` is the right one for ``body``; compared in constant time."""
    if not signature:
        return False
    expected = sign(channel_secret, body).encode("ascii")
    try:
        given = signature.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, given)

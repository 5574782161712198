import base64
import hashlib
import hmac

import pytest

from tagline_contracts.signature import sign, verify

SECRET = "8c570fa6dd201bb328f1c1eac23a96d8"
BODY = b'{"destination":"U1","events":[]}'


def test_sign_is_base64_hmac_sha256_of_the_raw_body() -> None:
    expected = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
    assert sign(SECRET, BODY) == expected


def test_right_signature_verifies() -> None:
    assert verify(SECRET, BODY, sign(SECRET, BODY))


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "not-base64!",
        sign("another secret", BODY),
        sign(SECRET, BODY + b" "),  # one byte of body changed
        "é" * 44,  # non-ASCII header must not raise
    ],
)
def test_wrong_or_missing_signature_fails(header: str | None) -> None:
    assert not verify(SECRET, BODY, header)


def test_signature_covers_the_exact_bytes_not_the_json_meaning() -> None:
    reformatted = b'{"destination": "U1", "events": []}'
    assert not verify(SECRET, reformatted, sign(SECRET, BODY))

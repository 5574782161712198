"""Which welcome a follow gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tagline_sender.domain.welcome import WelcomeSpec, welcome_for

HI = [{"type": "text", "text": "hi"}]
BACK = [{"type": "text", "text": "back"}]
PAY = [{"type": "text", "text": "pay"}]


def spec(**fields: object) -> WelcomeSpec:
    return WelcomeSpec.model_validate({"messages": HI, **fields})


def test_default_unblocked_and_source_welcomes() -> None:
    full = spec(unblocked_messages=BACK, by_source=[{"source": "line_pay", "messages": PAY}])
    assert welcome_for(full, unblocked=False, source=None) == HI
    assert welcome_for(full, unblocked=True, source="line_pay") == BACK  # unblocking wins
    assert welcome_for(full, unblocked=False, source="line_pay") == PAY
    assert welcome_for(full, unblocked=False, source="sticker") == HI
    assert welcome_for(spec(), unblocked=True, source=None) == HI  # no separate unblocked welcome
    assert welcome_for(spec(unblocked_messages=[]), unblocked=True, source=None) == []  # say nothing
    assert welcome_for(spec(enabled=False), unblocked=False, source=None) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"messages": []},
        {"messages": HI * 6},
        {"messages": [{"text": "no type"}]},
        {"unblocked_messages": [{"text": "no type"}]},
        {"by_source": [{"source": "a", "messages": HI}, {"source": "a", "messages": PAY}]},
        {"surprise": True},
    ],
)
def test_bad_welcomes_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WelcomeSpec.model_validate({"messages": HI, **fields})

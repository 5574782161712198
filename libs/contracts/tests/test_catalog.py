"""Every topic has a contract: its key and the envelope model(s) its records validate against."""

from __future__ import annotations

import pytest

from tagline_contracts import topics
from tagline_contracts.catalog import CATALOG, contract, is_dlq, original_of
from tagline_contracts.deadletter import DeadLetter
from tagline_contracts.envelope import Envelope


def test_every_topic_has_a_contract_with_envelope_models() -> None:
    assert set(CATALOG) == set(topics.ALL)
    for name, entry in CATALOG.items():
        assert entry.name == name and entry.key.startswith("channel:")
        assert entry.messages and all(issubclass(m, Envelope) for m in entry.messages)


def test_dead_letter_topics_carry_dead_letters_keyed_like_their_topic() -> None:
    for name in topics.ALL:
        dlq = topics.dlq(name)
        assert is_dlq(dlq) and not is_dlq(name)
        assert original_of(dlq) == name
        assert contract(dlq).messages == (DeadLetter,)
        assert contract(dlq).key == CATALOG[name].key
    with pytest.raises(ValueError, match="not a dead-letter topic"):
        original_of("line.events.v1")

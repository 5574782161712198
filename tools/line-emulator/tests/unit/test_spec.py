"""Body validation against LINE's OpenAPI document, with LINE's error shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tagline_contracts import line_openapi
from tagline_line_emulator.spec import BodyValidator, SpecNotFound, find_spec, property_path


@pytest.fixture(scope="module")
def validator() -> BodyValidator:
    return BodyValidator.load()


def errors(validator: BodyValidator, endpoint: str, body: Any) -> list[dict[str, str]]:
    return [e.to_json() for e in validator.validate(endpoint, body)]


TEXT = {"type": "text", "text": "hi"}


def test_valid_bodies_of_every_endpoint_pass(validator: BodyValidator) -> None:
    flex = {
        "type": "flex",
        "altText": "menu",
        "contents": {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [TEXT]}},
    }
    assert (
        errors(
            validator,
            "push",
            {"to": "U1", "messages": [TEXT, {"type": "sticker", "packageId": "1", "stickerId": "2"}]},
        )
        == []
    )
    assert errors(validator, "push", {"to": "U1", "messages": [flex], "notificationDisabled": True}) == []
    assert errors(validator, "reply", {"replyToken": "t", "messages": [TEXT]}) == []
    assert errors(validator, "multicast", {"to": ["U1", "U2"], "messages": [TEXT]}) == []
    assert errors(validator, "broadcast", {"messages": [TEXT]}) == []
    narrowcast = {
        "messages": [TEXT],
        "recipient": {"type": "audience", "audienceGroupId": 5},
        "limit": {"max": 10},
    }
    assert errors(validator, "narrowcast", narrowcast) == []


def test_unknown_message_type_names_the_allowed_ones(validator: BodyValidator) -> None:
    found = errors(validator, "push", {"to": "U1", "messages": [{"type": "txt", "text": "hi"}]})
    assert len(found) == 1
    assert found[0]["property"] == "messages[0].type"
    assert "text" in found[0]["message"]
    assert "sticker" in found[0]["message"]


def test_subtype_of_the_discriminator_is_applied(validator: BodyValidator) -> None:
    # a sticker without stickerId: only the mapped subtype (StickerMessage) requires it
    found = errors(
        validator, "reply", {"replyToken": "t", "messages": [{"type": "sticker", "packageId": "1"}]}
    )
    assert found == [{"message": "must be specified", "property": "messages[0].stickerId"}]


def test_nested_discriminators_deep_in_a_flex_message(validator: BodyValidator) -> None:
    bad_component = {"type": "box", "layout": "vertical", "contents": [TEXT, {"type": "bogus"}]}
    message = {"type": "flex", "altText": "a", "contents": {"type": "bubble", "body": bad_component}}
    found = errors(validator, "push", {"to": "U1", "messages": [message]})
    assert [e["property"] for e in found] == ["messages[0].contents.body.contents[1].type"]


def test_too_many_messages(validator: BodyValidator) -> None:
    found = errors(validator, "push", {"to": "U1", "messages": [TEXT] * 6})
    assert found == [{"message": "Size must be between 1 and 5", "property": "messages"}]


def test_no_messages(validator: BodyValidator) -> None:
    found = errors(validator, "broadcast", {"messages": []})
    assert found == [{"message": "Size must be between 1 and 5", "property": "messages"}]


def test_empty_and_overlong_text(validator: BodyValidator) -> None:
    assert errors(validator, "push", {"to": "U1", "messages": [{"type": "text", "text": ""}]}) == [
        {"message": "must be specified", "property": "messages[0].text"}
    ]
    long_text = {"type": "text", "text": "x" * 5001}
    assert errors(validator, "push", {"to": "U1", "messages": [long_text]}) == [
        {"message": "Length must be between 1 and 5000", "property": "messages[0].text"}
    ]


def test_multicast_takes_at_most_500_ids_all_strings(validator: BodyValidator) -> None:
    ids = [f"U{i:032d}" for i in range(501)]
    assert errors(validator, "multicast", {"to": ids, "messages": [TEXT]}) == [
        {"message": "Size must be between 1 and 500", "property": "to"}
    ]
    assert errors(validator, "multicast", {"to": ids[:500], "messages": [TEXT]}) == []
    assert errors(validator, "multicast", {"to": ["U1", 7], "messages": [TEXT]}) == [
        {"message": "must be a string", "property": "to[1]"}
    ]


def test_missing_to_and_wrong_types(validator: BodyValidator) -> None:
    assert errors(validator, "push", {"messages": [TEXT]}) == [
        {"message": "must be specified", "property": "to"}
    ]
    assert errors(validator, "push", {"to": 5, "messages": [TEXT]}) == [
        {"message": "must be a string", "property": "to"}
    ]
    assert errors(validator, "push", []) == [{"message": "must be an object", "property": ""}]


def test_every_error_is_reported(validator: BodyValidator) -> None:
    found = errors(validator, "push", {"messages": [{"type": "text"}, {"type": "nope"}]})
    assert {e["property"] for e in found} == {"to", "messages[0].text", "messages[1].type"}


def mini_spec(schemas: dict[str, Any]) -> dict[str, Any]:
    """A document whose five send operations all take the component ``Req``."""
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Req"}}}}
    operations = ["replyMessage", "pushMessage", "multicast", "narrowcast", "broadcast"]
    paths = {f"/{op}": {"post": {"operationId": op, "requestBody": body}} for op in operations}
    return {"paths": paths, "components": {"schemas": schemas}}


def test_openapi_nullable_enum_and_discriminator_translation() -> None:
    validator = BodyValidator(
        mini_spec(
            {
                "Req": {
                    "type": "object",
                    "required": ["mode", "pet"],
                    "properties": {
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "limit": {"type": "integer", "nullable": True},
                        "pet": {"$ref": "#/components/schemas/Pet"},
                    },
                },
                "Pet": {
                    "type": "object",
                    "required": ["kind"],
                    "properties": {"kind": {"type": "string"}},
                    "discriminator": {"propertyName": "kind", "mapping": {"cat": "#/components/schemas/Cat"}},
                },
                "Cat": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Pet"},
                        {
                            "type": "object",
                            "required": ["lives"],
                            "properties": {"lives": {"type": "integer"}},
                        },
                    ]
                },
            }
        )
    )
    assert validator.validate("push", {"mode": "a", "limit": None, "pet": {"kind": "cat", "lives": 9}}) == []
    assert errors(validator, "push", {"mode": "c", "limit": "x", "pet": {"kind": "cat"}}) == [
        {"message": "must be one of the following values: [a, b]", "property": "mode"},
        {"message": "must be an integer", "property": "limit"},
        {"message": "must be specified", "property": "pet.lives"},
    ]
    assert errors(validator, "push", {"mode": "a", "pet": {"kind": "dog"}}) == [
        {"message": "must be one of the following values: [cat]", "property": "pet.kind"}
    ]
    # without the discriminating property the base schema applies, with its own required list
    assert errors(validator, "push", {"mode": "a", "pet": {}}) == [
        {"message": "must be specified", "property": "pet.kind"}
    ]


def test_a_spec_without_a_send_operation_is_refused() -> None:
    spec = mini_spec({"Req": {"type": "object"}})
    del spec["paths"]["/multicast"]
    with pytest.raises(ValueError, match="multicast"):
        BodyValidator(spec)


def test_property_path_notation() -> None:
    assert property_path(["messages", 0, "text"]) == "messages[0].text"
    assert property_path([]) == ""
    assert property_path(["to", 3]) == "to[3]"


def test_find_spec_explicit_env_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "messaging-api.yml"
    spec.write_text("openapi: 3.0.0\n")
    assert find_spec(spec) == spec
    monkeypatch.setenv("TAGLINE_EMULATOR_SPEC_PATH", str(spec))
    assert find_spec() == spec
    with pytest.raises(SpecNotFound, match="not found"):
        find_spec(tmp_path / "nope.yml")


def test_default_spec_is_the_one_shipped_with_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAGLINE_EMULATOR_SPEC_PATH", raising=False)
    monkeypatch.chdir("/")  # found through the package, not from the working directory
    found = find_spec()
    assert found == line_openapi.spec("messaging-api.yml")
    assert found.is_file()
    assert str(found).endswith("tagline_contracts/line_openapi/messaging-api.yml")
    assert BodyValidator.load().validate("push", {"to": "U1", "messages": []}) != []

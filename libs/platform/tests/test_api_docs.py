"""docs/api/ (AsyncAPI of every topic, OpenAPI of every HTTP API) is what ``deploy/local/gen_docs.py`` makes
of the current code, and what that script declares the services publish matches the topics they create.

Here rather than under deploy/ because pytest collects libs/, services/ and tools/.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tagline_contracts import topics

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "deploy" / "local" / "gen_docs.py"
DOCS = ROOT / "docs" / "api"
STALE = "docs/api is not current: run `make docs` (uv run python deploy/local/gen_docs.py) and commit it"


def files_under(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tagline_gen_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_committed_api_docs_are_current(tmp_path: Path) -> None:
    done = subprocess.run(  # noqa: S603 - our own script, with this interpreter
        [sys.executable, str(SCRIPT), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    fresh, committed = files_under(tmp_path), files_under(DOCS)
    missing = sorted(set(fresh) - set(committed))
    extra = sorted(set(committed) - set(fresh))
    changed = sorted(name for name in set(fresh) & set(committed) if fresh[name] != committed[name])
    assert not (missing or extra or changed), f"{STALE}; missing {missing}, extra {extra}, changed {changed}"


def test_every_topic_is_documented_with_its_key_and_payload() -> None:
    addresses: dict[str, set[str]] = {}
    for path in sorted((DOCS / "asyncapi").glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        messages = document["components"]["messages"]
        for channel in document["channels"].values():
            for ref in channel["messages"].values():
                message = messages[ref["$ref"].removeprefix("#/components/messages/")]
                assert message["bindings"]["kafka"]["key"]["description"]
                assert message["payload"]["$ref"].startswith("#/components/schemas/")
                addresses.setdefault(channel["address"], set()).add(path.stem)
    for name in topics.ALL:
        assert name in addresses, f"{name} is in no AsyncAPI document"
    assert topics.dlq(topics.SEND_REQUESTS) in addresses
    assert addresses[topics.LINE_EVENTS] == {"ingest", "tagger", "sender", "liveshop"}
    for name in ("ingest", "tagger", "sender", "liveshop", "line-emulator"):
        assert json.loads((DOCS / "openapi" / f"{name}.json").read_text(encoding="utf-8"))["paths"]


class _Created(Exception):
    """Raised by the fake ensure_topics: start() has named its topics, nothing else should run."""


async def created_topics(
    monkeypatch: pytest.MonkeyPatch, module: str, start: Callable[[], Awaitable[None]]
) -> set[str]:
    seen: set[str] = set()

    async def fake_ensure_topics(_bootstrap: str, names: Iterable[str], **_: Any) -> None:
        seen.update(names)
        raise _Created

    monkeypatch.setattr(f"{module}.ensure_topics", fake_ensure_topics)
    with pytest.raises(_Created):
        await start()
    return seen


async def test_what_the_docs_say_each_service_publishes_is_what_it_creates_at_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tagline_liveshop.app import create_app as create_liveshop  # noqa: PLC0415
    from tagline_liveshop.settings import LiveshopSettings  # noqa: PLC0415
    from tagline_sender.app import create_app as create_sender  # noqa: PLC0415
    from tagline_sender.settings import SenderSettings  # noqa: PLC0415
    from tagline_tagger.app import create_app as create_tagger  # noqa: PLC0415
    from tagline_tagger.settings import TaggerSettings  # noqa: PLC0415

    script = load_script()
    apps = {
        "tagger": create_tagger(TaggerSettings(topic_namespace="", channels=["1234567890"])),
        "sender": create_sender(SenderSettings(topic_namespace="", journeys=True)),
        "liveshop": create_liveshop(LiveshopSettings(topic_namespace="")),
    }
    try:
        for name, app in apps.items():
            service = app.state.service
            created = await created_topics(monkeypatch, f"tagline_{name}.service", service.start)
            published = {topic for topic, _why in script.PUBLISHES[name]}
            dead_letters = {topics.dlq(topic) for topic in script.DEAD_LETTERS[name]}
            consumed = {c.topic for c in script.consumers_of(service.broker)}
            assert published | consumed <= created, name
            assert {t for t in created if ".dlq." in t} == dead_letters, name
    finally:
        await apps["sender"].state.service.line.close()
        await apps["liveshop"].state.service.gateway.close()
        for app in apps.values():
            await app.state.service.mongo.close()

"""The repository stands alone: a user clones only it, so nothing in it may refer to a directory beside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# spelled in pieces so this file does not match itself
OUTSIDE = re.compile(r"\.\./" + "shared" + r"\b|\b" + "shared" + r"/(?:line-openapi|DESIGN\.md|notes/)")
EXEMPT = {"uv.lock"}  # generated; its package names are not paths


def repository_files() -> list[str]:
    """Every file git tracks, plus new ones it does not ignore (so the test also holds before a commit)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name} - EXEMPT)


def test_no_file_refers_to_a_directory_beside_the_repository() -> None:
    offenders: list[str] = []
    files = repository_files()
    assert "README.md" in files  # the listing works
    for name in files:
        path = ROOT / name
        if not path.is_file():  # deleted but not yet committed
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        offenders.extend(
            f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {match.group(0)}"
            for match in OUTSIDE.finditer(text)
        )
    assert offenders == [], "refers to a directory beside the repository:\n" + "\n".join(offenders)

"""Run the whole stack in the foreground: Kafka, PostgreSQL + FerretDB, every service; Ctrl-C stops it all.

    make run            (= uv run python deploy/local/stack.py)

It says "ready" (with the URLs and what to try next) only once every service's ``/readyz`` answers 200, i.e.
every consumer has joined its group and Kafka and the database answer (tagline_platform.readiness); until
then it says which services it is waiting for and why, for up to READY_TIMEOUT_S, after which it stops
everything and exits 1. The servers' data is kept in ``.local/infra`` when the stack stops (``make
infra-reset`` deletes it); servers this run started are stopped with it, servers already running are not.

Services read the servers' addresses from ``.local/infra/infra.env``. Without channel settings in the
environment, ingest, sender and tagger use the development channel in ``deploy/local/dev-channels.json``,
``dev-sender-channels.json`` and ``dev-tagger-channels.json`` (ids only: the tagger never calls LINE, its
auto-replies go to the sender as send requests), and the sender talks to the LINE API emulator on port 8090,
never to LINE. Liveshop needs no channel settings (its confirmations are send requests too; it grants LINE
POINTS through the emulator's endpoint).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from tagline_platform.settings import read_env_file

ROOT = Path(__file__).resolve().parents[2]
INFRA = [sys.executable, str(ROOT / "deploy" / "local" / "infra.py")]
ENV_FILE = ROOT / ".local" / "infra" / "infra.env"
READY_TIMEOUT_S = 180.0
REPORT_EVERY_S = 5.0
DEV_CHANNEL = "1234567890"


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    env: dict[str, str] = field(default_factory=dict)

    def url(self, env: Mapping[str, str]) -> str:
        """Where it listens, from its ``TAGLINE_<X>_HOST`` / ``_PORT`` in ``env`` (the caller's may win)."""
        prefix = next(key for key in self.env if key.endswith("_HOST")).removesuffix("HOST")
        return f"http://{env[prefix + 'HOST']}:{env[prefix + 'PORT']}"


SERVICES = (
    Service(
        "line-emu",
        "tagline_line_emulator",
        {
            "TAGLINE_EMULATOR_HOST": "127.0.0.1",
            "TAGLINE_EMULATOR_PORT": "8090",
            # the sender's file: the emulator learns which channel the sender's access token belongs to
            "TAGLINE_EMULATOR_CHANNELS_FILE": str(ROOT / "deploy" / "local" / "dev-sender-channels.json"),
        },
    ),
    Service(
        "ingest",
        "tagline_ingest",
        {
            "TAGLINE_INGEST_HOST": "127.0.0.1",
            "TAGLINE_INGEST_PORT": "8080",
            "TAGLINE_INGEST_CHANNEL_SECRETS_FILE": str(ROOT / "deploy" / "local" / "dev-channels.json"),
        },
    ),
    Service(
        "sender",
        "tagline_sender",
        {
            "TAGLINE_SENDER_HOST": "127.0.0.1",
            "TAGLINE_SENDER_PORT": "8081",
            "TAGLINE_SENDER_LINE_API_URL": "http://127.0.0.1:8090",
            "TAGLINE_SENDER_CHANNELS_FILE": str(ROOT / "deploy" / "local" / "dev-sender-channels.json"),
        },
    ),
    Service(
        "tagger",
        "tagline_tagger",
        {
            "TAGLINE_TAGGER_HOST": "127.0.0.1",
            "TAGLINE_TAGGER_PORT": "8082",
            "TAGLINE_TAGGER_CHANNELS_FILE": str(ROOT / "deploy" / "local" / "dev-tagger-channels.json"),
        },
    ),
    Service(
        "liveshop",
        "tagline_liveshop",
        {
            "TAGLINE_LIVESHOP_HOST": "127.0.0.1",
            "TAGLINE_LIVESHOP_PORT": "8083",
            "TAGLINE_LIVESHOP_POINTS_URL": "http://127.0.0.1:8090",
        },
    ),
)


def pump(name: str, stream: object) -> None:
    for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
        sys.stdout.write(f"{name:>8} | {line}")
        sys.stdout.flush()


def not_ready(url: str) -> str | None:
    """Why ``url`` is not ready (None when its ``/readyz`` answers 200)."""
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=3) as answer:  # noqa: S310 - our own loopback URL
            return None if answer.status == 200 else f"/readyz answered {answer.status}"
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail")
        except ValueError:
            detail = None
        return f"/readyz {exc.code}: {detail or exc.reason}"
    except OSError as exc:
        return f"not listening yet ({getattr(exc, 'reason', exc)})"


def wait_until_ready(
    procs: list[tuple[Service, subprocess.Popen[str], str]], stopping: threading.Event
) -> bool:
    """Poll every service's ``/readyz`` until all answer 200; say what is still starting every few seconds."""
    started = time.monotonic()
    reported = started
    while not stopping.is_set():
        exited = [service.name for service, proc, _url in procs if proc.poll() is not None]
        if exited:
            print(f"not ready: {', '.join(exited)} exited during the start (its log is above)", flush=True)
            return False
        waiting = {service.name: why for service, _proc, url in procs if (why := not_ready(url)) is not None}
        if not waiting:
            return True
        now = time.monotonic()
        if now - started > READY_TIMEOUT_S:
            print(f"not ready after {READY_TIMEOUT_S:.0f} s; stopping. Still waiting for:", flush=True)
            for name, why in waiting.items():
                print(f"  {name}: {why}", flush=True)
            return False
        if now - reported >= REPORT_EVERY_S:
            reported = now
            print(f"starting ({now - started:.0f} s): waiting for {', '.join(waiting)}", flush=True)
            for name, why in waiting.items():
                print(f"  {name}: {why}", flush=True)
        stopping.wait(0.5)
    return False


def print_ready(urls: Mapping[str, str], seconds: float) -> None:
    sender, tagger, emulator = urls["sender"], urls["tagger"], urls["line-emu"]
    lines = [
        f"ready ({seconds:.0f} s): every service answers /readyz",
        f"  ingest    {urls['ingest']}   LINE webhooks: POST /line/webhook/{DEV_CHANNEL} (dev channel)",
        f"  sender    {sender}",
        f"  tagger    {tagger}",
        f"  liveshop  {urls['liveshop']}",
        f"  line-emu  {emulator}   the LINE API the sender calls (control API: {emulator}/_emulator/docs)",
        'next: README.md, "Run the stack", e.g.',
        f"  curl -s {sender}/channels/{DEV_CHANNEL}/quota",
        f"  curl -s {tagger}/channels/{DEV_CHANNEL}/coverage",
        "Ctrl-C stops everything; the data is kept in .local/infra (`make infra-reset` deletes it)",
    ]
    print("\n".join(lines), flush=True)


def main() -> int:
    # Stop the servers at the end only if this run started them (like deploy/local/with-infra); `down` keeps
    # their data, so the next `make run` finds it.
    already_up = subprocess.run([*INFRA, "status"], capture_output=True, check=False).returncode == 0
    subprocess.run([*INFRA, "up"], check=True)
    base_env = {**os.environ, **read_env_file(ENV_FILE)}
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    procs: list[tuple[Service, subprocess.Popen[str], str]] = []
    for service in SERVICES:
        env = {**service.env, **base_env}  # the caller's environment wins over the defaults above
        proc = subprocess.Popen(
            [sys.executable, "-m", service.module],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=pump, args=(service.name, proc.stdout), daemon=True).start()
        procs.append((service, proc, service.url(env)))
        print(f"started {service.name} (pid {proc.pid})", flush=True)
    print("starting: waiting until every service answers /readyz…", flush=True)
    began = time.monotonic()
    code = 0
    if wait_until_ready(procs, stopping):
        print_ready({service.name: url for service, _proc, url in procs}, time.monotonic() - began)
    elif not stopping.is_set():
        code = 1
        stopping.set()
    while not stopping.is_set():
        for service, proc, _url in procs:
            if proc.poll() is not None:
                print(f"{service.name} exited with {proc.returncode}; stopping the stack", flush=True)
                code = 1
                stopping.set()
        stopping.wait(0.2)
    for _service, proc, _url in procs:
        if proc.poll() is None:
            proc.terminate()
    for _service, proc, _url in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    if not already_up:
        subprocess.run([*INFRA, "down"], check=False)
    return code


if __name__ == "__main__":
    sys.exit(main())

"""Run the whole stack in the foreground: Kafka + FerretDB, then every service; Ctrl-C stops everything.

    make run            (= uv run python deploy/local/stack.py)

Services read the servers' addresses from ``.local/infra/infra.env``. Without channel settings in the
environment, ingest, sender and tagger use the development channel in ``deploy/local/dev-channels.json``,
``dev-sender-channels.json`` and ``dev-tagger-channels.json`` (ids only: the tagger never calls LINE, its
auto-replies go to the sender as send requests), and the sender talks to the LINE API emulator on port 8090,
never to LINE. Liveshop needs no channel settings (its confirmations are send requests too; it grants LINE
POINTS through the emulator's endpoint).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from tagline_platform.settings import read_env_file

ROOT = Path(__file__).resolve().parents[2]
INFRA = [sys.executable, str(ROOT / "deploy" / "local" / "infra.py")]
ENV_FILE = ROOT / ".local" / "infra" / "infra.env"


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    env: dict[str, str] = field(default_factory=dict)


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


def main() -> int:
    # Stop the servers at the end only if this run started them (like deploy/local/with-infra).
    already_up = subprocess.run([*INFRA, "status"], capture_output=True, check=False).returncode == 0
    subprocess.run([*INFRA, "up"], check=True)
    base_env = {**os.environ, **read_env_file(ENV_FILE)}
    procs: list[tuple[Service, subprocess.Popen[str]]] = []
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
        procs.append((service, proc))
        print(f"started {service.name} (pid {proc.pid})", flush=True)
    print("stack running; Ctrl-C stops everything", flush=True)

    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    while not stopping.is_set():
        for service, proc in procs:
            if proc.poll() is not None:
                print(f"{service.name} exited with {proc.returncode}; stopping the stack", flush=True)
                code = 1
                stopping.set()
        time.sleep(0.2)
    for _service, proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for _service, proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
    if not already_up:
        subprocess.run([*INFRA, "down"], check=False)
    return code


if __name__ == "__main__":
    sys.exit(main())

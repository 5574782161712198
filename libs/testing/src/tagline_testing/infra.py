"""Where the tests' Kafka and MongoDB are (DESIGN.md §5).

In order: the environment (``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URL``, which ``make test`` sets); the env
file of the test servers (``.local/test-infra/infra.env``, written by ``make test-fast``; never the servers of
``make run``, whose data the tests must not touch); testcontainers when a Docker engine answers; otherwise a
failure that names the command starting the test servers. Never an in-memory fake.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tagline_platform.settings import read_env_file

TEST_INFRA_STATE = Path(".local") / "test-infra"
"""The state dir of the test servers, relative to the repository root (``deploy/local/with-infra``)."""
START_COMMAND = f"make test-fast   (or: python3 deploy/local/infra.py up --state-dir {TEST_INFRA_STATE})"


class InfraNotFound(RuntimeError):
    pass


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    mongodb_url: str
    origin: str


def repo_root() -> Path | None:
    """The checkout this library lives in (or the first parent of the cwd that has ``deploy/local``)."""
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for candidate in (start, *start.parents):
            if (candidate / "deploy" / "local" / "infra.py").is_file():
                return candidate
    return None


def env_file_path() -> Path | None:
    explicit = os.environ.get("TAGLINE_INFRA_ENV")
    if explicit:
        return Path(explicit)
    root = repo_root()
    return root / TEST_INFRA_STATE / "infra.env" if root else None


def answers(host_port: str, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections at ``host:port``."""
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def mongo_host_port(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname or '127.0.0.1'}:{parsed.port or 27017}"


def docker_answers() -> bool:
    """Ask the Docker engine itself (``which docker`` proves nothing: the client may be there alone)."""
    try:
        import docker  # noqa: PLC0415 - optional, only when no servers were given

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextmanager
def _testcontainers() -> Iterator[Infra]:
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415
    from testcontainers.mongodb import MongoDbContainer  # noqa: PLC0415

    with ExitStack() as stack:
        kafka = stack.enter_context(KafkaContainer("apache/kafka:4.2.0").with_kraft())
        mongo = stack.enter_context(MongoDbContainer("mongo:7"))
        yield Infra(kafka.get_bootstrap_server(), mongo.get_connection_url(), "testcontainers")


@contextmanager
def provide_infra() -> Iterator[Infra]:
    """Yield the servers for a test session; raise :class:`InfraNotFound` with the way out."""
    kafka, mongo = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URL")
    origin = "environment"
    if not (kafka and mongo):
        path = env_file_path()
        if path is not None and path.is_file():
            values = read_env_file(path)
            kafka = kafka or values.get("KAFKA_BOOTSTRAP_SERVERS")
            mongo = mongo or values.get("MONGODB_URL")
            origin = str(path)
    if kafka and mongo:
        first_kafka = kafka.split(",")[0]
        if not answers(first_kafka) or not answers(mongo_host_port(mongo)):
            raise InfraNotFound(
                f"Kafka ({kafka}) or MongoDB ({mongo}) from {origin} does not answer. Start them with: "
                f"{START_COMMAND}"
            )
        yield Infra(kafka, mongo, origin)
        return
    if docker_answers():
        with _testcontainers() as infra:
            yield infra
        return
    raise InfraNotFound(
        "No Kafka/MongoDB for the tests: KAFKA_BOOTSTRAP_SERVERS and MONGODB_URL are not set, no "
        f"{env_file_path() or TEST_INFRA_STATE / 'infra.env'} exists and no Docker engine answers. "
        f"Start the test servers with: {START_COMMAND}"
    )


@dataclass(frozen=True)
class DedicatedKafka:
    """A Kafka of a test's own (started by ``deploy/local/infra.py``), which the test may stop or freeze."""

    bootstrap: str
    pid: int
    state_dir: Path

    def freeze(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its connections (a hung broker).

        Returns once every thread of the JVM is really stopped (signal delivery is asynchronous).
        """
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not _all_threads_stopped(self.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka pid {self.pid} did not stop")
            time.sleep(0.01)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        _infra_command("down", self.state_dir)


def _all_threads_stopped(pid: int) -> bool:
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            states.append(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


def _infra_command(action: str, state_dir: Path, *extra: str) -> None:
    root = repo_root()
    if root is None:
        raise InfraNotFound("deploy/local/infra.py not found above this checkout")
    subprocess.run(
        [
            sys.executable,
            str(root / "deploy" / "local" / "infra.py"),
            action,
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        check=True,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )


@contextmanager
def dedicated_kafka(state_dir: Path) -> Iterator[DedicatedKafka]:
    """Start a separate single-node Kafka in ``state_dir`` for tests that break the broker on purpose; it is
    stopped and its data deleted afterwards."""
    _infra_command("up", state_dir, "--only", "kafka")
    try:
        env = read_env_file(state_dir / "infra.env")
        pid = int((state_dir / "kafka.pid").read_text().strip())
        yield DedicatedKafka(env["KAFKA_BOOTSTRAP_SERVERS"], pid, state_dir)
    finally:
        with suppress(OSError):
            os.kill(pid, signal.SIGCONT)
        _infra_command("reset", state_dir)

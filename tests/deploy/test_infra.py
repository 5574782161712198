"""deploy/local/infra.py: its Kafka probe waits for a group coordinator, its FerretDB patches apply to the
source it builds, data survives a restart, and a kill -9 of PostgreSQL or FerretDB loses no acknowledged
write.

The probe is tested against a fake broker speaking the three requests it sends; the data against real servers
started in a scratch state dir under the repository's ``.local`` (PostgreSQL runs as the ``postgres`` account
when the tests run as root, and that account cannot enter pytest's private temporary dirs).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.errors import PyMongoError

from tagline_platform.kafka import ensure_topics
from tagline_platform.mongo import create_mongo_client
from tagline_platform.settings import read_env_file

ROOT = Path(__file__).resolve().parents[2]
INFRA_SCRIPT = ROOT / "deploy" / "local" / "infra.py"


def _load_infra() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tagline_local_infra", INFRA_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


infra = _load_infra()


# ---- the probe ---------------------------------------------------------------------------------------------

METADATA, FIND_COORDINATOR, API_VERSIONS = 3, 10, 18  # Kafka's API keys


def _string(text: str) -> bytes:
    return struct.pack(">h", len(text)) + text.encode()


class FakeBroker:
    """Answers ApiVersions v0, Metadata v4 and FindCoordinator v1 like a single Kafka node (id 1) whose
    group coordinator answers with the next of ``coordinator_errors`` (the last one repeats)."""

    def __init__(self, coordinator_errors: list[int]) -> None:
        self.coordinator_errors = coordinator_errors
        self.find_coordinator_keys: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        while header := conn.recv(4, socket.MSG_WAITALL):
            (size,) = struct.unpack(">i", header)
            request = conn.recv(size, socket.MSG_WAITALL)
            api_key, _version, correlation_id, client_id_length = struct.unpack_from(">hhih", request)
            body = request[10 + client_id_length :]
            conn.sendall(self._response(api_key, correlation_id, body))

    def _response(self, api_key: int, correlation_id: int, body: bytes) -> bytes:
        if api_key == API_VERSIONS:
            apis = [(METADATA, 0, 12), (FIND_COORDINATOR, 0, 6), (API_VERSIONS, 0, 4)]
            payload = struct.pack(">hi", 0, len(apis)) + b"".join(struct.pack(">hhh", *api) for api in apis)
        elif api_key == METADATA:
            broker = struct.pack(">i", 1) + _string("127.0.0.1") + struct.pack(">ih", self.port, -1)
            payload = struct.pack(">ii", 0, 1) + broker
        else:
            (key_length,) = struct.unpack_from(">h", body)
            self.find_coordinator_keys.append(body[2 : 2 + key_length].decode())
            error = (
                self.coordinator_errors.pop(0)
                if len(self.coordinator_errors) > 1
                else self.coordinator_errors[0]
            )
            payload = struct.pack(">ihh", 0, error, -1) + struct.pack(">i", 1)
            payload += _string("127.0.0.1") + struct.pack(">i", self.port)
        payload = struct.pack(">i", correlation_id) + payload
        return struct.pack(">i", len(payload)) + payload


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    fake = FakeBroker([15, 14, 0])  # COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS, then found
    try:
        yield fake
    finally:
        fake.close()


def test_kafka_is_not_ready_until_it_names_a_group_coordinator(broker: FakeBroker) -> None:
    """A new Kafka lists its broker seconds before consumers can join a group: `up` must wait for both."""
    assert infra.probe_kafka(broker.port) == (
        "group coordinator not available yet "
        "(COORDINATOR_NOT_AVAILABLE: __consumer_offsets is being created or loaded)"
    )
    assert infra.probe_kafka(broker.port) == (
        "group coordinator not available yet "
        "(COORDINATOR_LOAD_IN_PROGRESS: __consumer_offsets is being created or loaded)"
    )
    assert infra.probe_kafka(broker.port) is None
    assert broker.find_coordinator_keys == ["tagline-infra-probe"] * 3


def test_find_coordinator_v1_wire_format() -> None:
    assert infra.encode_find_coordinator_v1_body("g1") == b"\x00\x02g1\x00"  # key, key type 0 = group
    reply = (
        struct.pack(">iihh", 7, 0, 15, 3)
        + b"off"
        + struct.pack(">i", -1)
        + _string("")
        + struct.pack(">i", -1)
    )
    answer = infra.decode_find_coordinator_v1(reply, 7)
    assert (answer.error_code, answer.error_message, answer.node_id) == (15, "off", -1)
    with pytest.raises(infra.ProtocolError, match="correlation id 7"):
        infra.decode_find_coordinator_v1(reply, 8)
    assert infra.coordinator_problem(infra.FindCoordinatorAnswer(0, None, 1, "127.0.0.1", 9092), 9092) is None
    other = infra.FindCoordinatorAnswer(0, None, 2, "127.0.0.1", 9093)
    assert infra.coordinator_problem(other, 9092) == "group coordinator is node 2 at port 9093, not ours"


def test_one_consumer_offsets_partition_on_the_single_local_node() -> None:
    """Every group then has the one coordinator the probe waits for (and it is created at once)."""
    properties = infra.render_server_properties(broker_port=1, controller_port=2, data_dir=Path("/d"))
    assert "offsets.topic.num.partitions=1\n" in properties


# ---- the PostgreSQL server and FerretDB's command line -----------------------------------------------------


def test_postgres_listens_on_loopback_with_room_for_ferretdbs_pool_and_durable_commits() -> None:
    command = infra.postgres_command(
        Path("/pg/bin"), data_dir=Path("/s/postgres-data"), port=15432, socket_dir=Path("/s/postgres-run")
    )
    assert command[:3] == ["/pg/bin/postgres", "-D", "/s/postgres-data"]
    settings = dict(arg.split("=", 1) for arg in command[4::2])
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["port"] == "15432"
    assert settings["unix_socket_directories"] == "/s/postgres-run"
    assert int(settings["max_connections"]) >= 2 * infra.FERRETDB_POOL_MAX_CONNS + 10
    assert (settings["fsync"], settings["synchronous_commit"], settings["full_page_writes"]) == ("on",) * 3

    ferretdb = infra.ferretdb_command(
        Path("/f"), port=27117, postgres_port=15432, process_state_dir=Path("/s/ferretdb-state")
    )
    assert "--handler=postgresql" in ferretdb
    assert (
        f"--postgresql-url=postgres://ferretdb@127.0.0.1:15432/ferretdb"
        f"?pool_max_conns={infra.FERRETDB_POOL_MAX_CONNS}"
    ) in ferretdb


def test_a_socket_path_too_long_for_unix_sockets_means_tcp_only() -> None:
    assert infra.postgres_socket_dir(Path("/s/run"), 15432) == Path("/s/run")
    assert infra.postgres_socket_dir(Path("/" + "d" * 100), 15432) is None


def test_a_missing_postgresql_server_names_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(infra, "POSTGRES_DEBIAN_ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config, no initdb
    with pytest.raises(infra.InfraError, match=r"apt-get install -y postgresql"):
        infra.find_postgres_bindir()
    (tmp_path / "16" / "bin").mkdir(parents=True)
    for tool in ("postgres", "initdb", "psql"):
        (tmp_path / "16" / "bin" / tool).touch()
    assert infra.find_postgres_bindir() == tmp_path / "16" / "bin"


def test_a_state_dir_the_postgres_account_cannot_enter_is_refused_with_the_reason(tmp_path: Path) -> None:
    """As root, PostgreSQL runs as `postgres`, which cannot enter e.g. pytest's private temporary dirs. The
    check is by mode bits, so it is shown here with the running account and a directory it has no x bit on."""
    account = infra.pwd.getpwuid(os.getuid()).pw_name
    private = tmp_path / "private"
    private.mkdir(mode=0o600)
    try:
        with pytest.raises(infra.InfraError, match=rf"cannot enter {private} \(mode 0600\)"):
            infra.check_reachable(private / "state", account)
        infra.check_reachable(tmp_path / "state", account)  # its own temporary dir it can enter
    finally:
        private.chmod(0o700)  # so pytest can remove it


def test_postgres_wire_messages() -> None:
    startup = infra.encode_pg_startup("postgres", "postgres")
    assert struct.unpack(">ii", startup[:8]) == (len(startup), 196608)
    assert startup[8:] == b"user\x00postgres\x00database\x00postgres\x00\x00"
    error = b"SFATAL\x00C57P03\x00Mthe database system is starting up\x00\x00"
    assert infra.decode_pg_error(error) == "57P03: the database system is starting up"


# ---- the FerretDB patches ----------------------------------------------------------------------------------


def test_every_ferretdb_patch_applies_to_the_source_infra_builds(tmp_path: Path) -> None:
    """The source is the module `up` builds (from the Go module cache after the first build)."""
    go = infra.find_tool("go", "install Go (CI needs it: .ci/run checks for it)")  # a failure, not a skip
    module = f"{infra.FERRETDB_MODULE}@{infra.FERRETDB_VERSION}"
    download = subprocess.run(  # noqa: S603 - go itself, the module infra.py builds
        [go, "mod", "download", "-json", module], capture_output=True, text=True, check=True, timeout=300
    )
    source = tmp_path / "src"
    shutil.copytree(json.loads(download.stdout)["Dir"], source)
    infra._make_tree_writable(source)

    paths = {patch.path for patch in infra.FERRETDB_PATCHES}
    upstream = {path: (source / path).read_text() if (source / path).exists() else None for path in paths}

    infra.patch_ferretdb(source)  # raises if any upstream text is not found exactly once

    assert all((source / path).read_text() != text for path, text in upstream.items())
    patched = "".join((source / path).read_text() for path in paths)
    assert all(f"Tagline patch {number}" in patched for number in range(1, 6))


def test_a_patch_whose_upstream_text_moved_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.go").write_text("package a\n")
    monkeypatch.setattr(infra, "FERRETDB_PATCHES", (infra.SourcePatch("a.go", "missing", "x"),))
    with pytest.raises(RuntimeError, match=r"cannot patch a\.go: 'missing' not found exactly once"):
        infra.patch_ferretdb(tmp_path)
    monkeypatch.setattr(infra, "FERRETDB_PATCHES", (infra.SourcePatch("a.go", None, "x"),))
    with pytest.raises(RuntimeError, match=r"cannot add a\.go: it exists upstream"):
        infra.patch_ferretdb(tmp_path)


# ---- data across restarts and crashes ----------------------------------------------------------------------


def _infra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the repository's own script
        [sys.executable, str(INFRA_SCRIPT), *args], capture_output=True, text=True, check=False, timeout=600
    )


@pytest.fixture
def state_dir() -> Iterator[str]:
    """A scratch state dir the ``postgres`` account can reach; its servers are reset and it is deleted."""
    path = ROOT / ".local" / f"test-deploy-{uuid.uuid4().hex[:8]}"
    try:
        yield str(path)
    finally:
        _infra("reset", "--state-dir", str(path))
        shutil.rmtree(path, ignore_errors=True)


async def _records(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=5_000)
        return [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()


async def _documents(url: str) -> list[dict[str, Any]]:
    client: Any = create_mongo_client(url, app_name="tagline-infra-test")
    try:
        return [doc async for doc in client["kept"]["docs"].find({}, {"_id": 0})]
    finally:
        await client.close()


async def _topic_exists(bootstrap: str, topic: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


def _up(state: str, *args: str) -> dict[str, str]:
    up = _infra("up", "--state-dir", state, *args)
    assert up.returncode == 0, up.stdout + up.stderr
    return read_env_file(Path(state) / "infra.env")


@pytest.mark.integration
async def test_down_keeps_the_data_for_the_next_up_and_reset_deletes_it(state_dir: str) -> None:
    state = state_dir
    env = _up(state)
    kafka, mongo = env["KAFKA_BOOTSTRAP_SERVERS"], env["MONGODB_URL"]
    status = _infra("status", "--state-dir", state)
    assert status.returncode == 0, status.stdout
    assert "postgres: running" in status.stdout
    await ensure_topics(kafka, ["kept.v1"], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait("kept.v1", b"a record")
    finally:
        await producer.stop()
    client: Any = create_mongo_client(mongo, app_name="tagline-infra-test")
    try:
        await client["kept"]["docs"].insert_one({"member": "U1"})
    finally:
        await client.close()

    down = _infra("down", "--state-dir", state)
    assert down.returncode == 0, down.stderr
    assert "data kept" in down.stdout
    assert down.stdout.index("ferretdb: stopped") < down.stdout.index("postgres: stopped")
    assert _infra("status", "--state-dir", state).returncode == 1  # stopped
    env = _up(state)
    kafka, mongo = env["KAFKA_BOOTSTRAP_SERVERS"], env["MONGODB_URL"]
    assert await _records(kafka, "kept.v1") == [b"a record"]
    assert await _documents(mongo) == [{"member": "U1"}]

    reset = _infra("reset", "--state-dir", state)
    assert reset.returncode == 0, reset.stderr
    assert not (Path(state) / "postgres-data").exists()
    env = _up(state)
    assert not await _topic_exists(env["KAFKA_BOOTSTRAP_SERVERS"], "kept.v1")
    assert await _documents(env["MONGODB_URL"]) == []


async def _write_until(url: str, stop: asyncio.Event, acknowledged: list[int], first: int) -> None:
    """Insert numbered documents one at a time until ``stop``; record each one the server acknowledged."""
    client: Any = create_mongo_client(url, app_name="tagline-infra-test", timeout_ms=1_000, retryWrites=False)
    try:
        number = first
        while not stop.is_set():
            try:
                await client["crash"]["docs"].insert_one({"_id": number})
            except PyMongoError:
                await asyncio.sleep(0.05)  # the server is down, or the outcome is unknown: not acknowledged
            else:
                acknowledged.append(number)
            number += 1
    finally:
        await client.close()


async def _stored(url: str) -> set[int]:
    client: Any = create_mongo_client(url, app_name="tagline-infra-test")
    try:
        return {doc["_id"] async for doc in client["crash"]["docs"].find({})}
    finally:
        await client.close()


async def _until_acknowledged(acknowledged: list[int], count: int, writer: asyncio.Task[None]) -> None:
    async with asyncio.timeout(60):
        while len(acknowledged) < count:
            assert not writer.done(), "the writer stopped"
            await asyncio.sleep(0.05)


@pytest.mark.integration
@pytest.mark.parametrize("server", ["postgres", "mongo"])
async def test_kill_9_loses_no_acknowledged_write(state_dir: str, server: str) -> None:
    """Writes acknowledged up to the moment PostgreSQL or FerretDB is SIGKILLed are all there after the
    restart (fsync and synchronous commits on; FerretDB answers after PostgreSQL's commit)."""
    url = _up(state_dir, "--only", "mongo")["MONGODB_URL"]
    acknowledged: list[int] = []
    stop = asyncio.Event()
    writer = asyncio.create_task(_write_until(url, stop, acknowledged, first=0))
    try:
        await _until_acknowledged(acknowledged, 200, writer)  # in full flight when the server dies
        restart = await asyncio.to_thread(_infra, "restart", server, "--kill", "--state-dir", state_dir)
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert "killed" in restart.stdout
        await _until_acknowledged(acknowledged, len(acknowledged) + 50, writer)  # and again after it
    finally:
        stop.set()
        await writer

    lost = set(acknowledged) - await _stored(url)
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged writes lost: {sorted(lost)[:10]}…"

"""deploy/local/infra.py: its Kafka probe waits for a group coordinator, and data survives a restart.

The probe is tested against a fake broker speaking the three requests it sends; the data against real servers
started in a temporary state dir (about half a minute: two starts, a stop and a reset).
"""

from __future__ import annotations

import importlib.util
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

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


# ---- data across restarts ----------------------------------------------------------------------------------


def _infra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the repository's own script
        [sys.executable, str(INFRA_SCRIPT), *args], capture_output=True, text=True, check=False, timeout=600
    )


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


@pytest.mark.integration
async def test_down_keeps_the_data_for_the_next_up_and_reset_deletes_it(tmp_path: Path) -> None:
    state = str(tmp_path / "infra")
    try:
        assert _infra("up", "--state-dir", state).returncode == 0
        env = read_env_file(Path(state) / "infra.env")
        kafka, mongo = env["KAFKA_BOOTSTRAP_SERVERS"], env["MONGODB_URL"]
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
        assert _infra("status", "--state-dir", state).returncode == 1  # stopped
        assert _infra("up", "--state-dir", state).returncode == 0
        env = read_env_file(Path(state) / "infra.env")
        kafka, mongo = env["KAFKA_BOOTSTRAP_SERVERS"], env["MONGODB_URL"]
        assert await _records(kafka, "kept.v1") == [b"a record"]
        assert await _documents(mongo) == [{"member": "U1"}]

        reset = _infra("reset", "--state-dir", state)
        assert reset.returncode == 0, reset.stderr
        assert _infra("up", "--state-dir", state).returncode == 0
        env = read_env_file(Path(state) / "infra.env")
        assert not await _topic_exists(env["KAFKA_BOOTSTRAP_SERVERS"], "kept.v1")
        assert await _documents(env["MONGODB_URL"]) == []
    finally:
        _infra("reset", "--state-dir", state)

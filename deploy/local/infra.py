#!/usr/bin/env python3
"""Start and stop Tagline's local Kafka and MongoDB-compatible servers without Docker.

Where a Docker engine is available, `docker compose up` is the usual way. This script starts the same kind of
servers from the package registries instead, using only the Python 3.11 standard library (so it runs with
plain ``python3`` before any virtualenv exists):

* Apache Kafka 4.2.0, a single KRaft node (broker and controller in one JVM), from jars that Maven resolves
  from Maven Central with ``deploy/kafka/pom.xml``; it logs through ``deploy/kafka/log4j2.properties``.
  Needs Java 17+ (and Maven the first time).
* FerretDB v1.24.2 (the MongoDB wire protocol) on SQLite, built with Go from the Go module proxy.
  Needs Go 1.24+ the first time.

Usage (from the repository root)::

    python3 deploy/local/infra.py up     [--state-dir DIR] [--only kafka|mongo]
    python3 deploy/local/infra.py down   [--state-dir DIR]   # stop; the data is kept
    python3 deploy/local/infra.py reset  [--state-dir DIR]   # stop and delete the data
    python3 deploy/local/infra.py restart kafka|mongo [--state-dir DIR] [--kill] [--down-s N]
    python3 deploy/local/infra.py status [--state-dir DIR]   # exit 0 if everything answers, 1 otherwise
    python3 deploy/local/infra.py env    [--state-dir DIR]   # prints the env file

``up`` is idempotent: servers that already run and answer are left alone. It waits until each server
answers at the protocol level (Kafka: ApiVersions, a Metadata answer that lists the broker and a
FindCoordinator answer for a consumer group, so a consumer can join a group as soon as ``up`` returns;
FerretDB: a MongoDB ``ping`` over OP_MSG), then writes ``<state dir>/infra.env``::

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>
    MONGODB_URL=mongodb://127.0.0.1:<port>/

with a line for each server running from that state dir (after ``up --only kafka`` on a fresh state dir, only
the Kafka line). Load it with e.g. ``set -a; . .local/infra/infra.env; set +a``. If a server does not answer
in time (120 s for Kafka, 60 s for FerretDB), ``up`` stops it, prints the tail of its log and exits 1.

Data survives: ``up`` starts each server on the data of its last run (Kafka's formatted log dir with its
cluster id, FerretDB's SQLite files), or on new data the first time; ``down`` stops the servers (SIGTERM to
the process group, SIGKILL after 20 s) and keeps their data; ``reset`` stops them and deletes it (logs and
ports are kept). ``restart`` is for fault drills (``make chaos``): it stops one server (SIGTERM, or SIGKILL
with ``--kill``), keeps it down ``--down-s`` seconds and starts it again on the same port with its data.

Files:

* Downloads and builds are cached by version in ``$TAGLINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/tagline``,
  else ``~/.cache/tagline``: a second ``up``, even from a fresh clone, neither downloads nor builds.
* Runtime state lives in the state dir (default ``<repo root>/.local/infra``): data dirs, logs
  (``logs/``), pid files, the chosen ports (``ports.json``, reused by later starts) and ``infra.env``.
  Ports are free loopback ports, preferably 19092 (Kafka), 19093 (Kafka controller) and 27117 (FerretDB);
  several state dirs can run side by side on different ports. ``make run`` and ``make infra-up`` use the
  default one; the tests (``deploy/local/with-infra``) use ``.local/test-infra`` and the fault drill
  ``.local/chaos/infra``, so neither touches the data of ``make run``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

KAFKA_VERSION = "4.2.0"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.properties"
DEFAULT_STATE_DIR = REPO_ROOT / ".local" / "infra"

LOOPBACK = "127.0.0.1"
PREFERRED_PORTS: Mapping[str, int] = {"kafka": 19092, "kafka_controller": 19093, "ferretdb": 27117}
KAFKA_NODE_ID = 1
KAFKA_HEAP = ("-Xmx768m", "-Xms256m")
KAFKA_JVM_FLAGS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
KAFKA_START_TIMEOUT_S = 120.0
FERRETDB_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.25
LOG_TAIL_LINES = 40

ENV_FILE_NAME = "infra.env"
PORTS_FILE_NAME = "ports.json"


class InfraError(Exception):
    """A failure whose message is meant for the user: main() prints it and exits 1."""


class ProtocolError(ValueError):
    """A server answered, but not with what the protocol says it should."""


def say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where the cache and one state dir live; every other path is derived from these two."""

    state_dir: Path
    cache_dir: Path

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def env_file(self) -> Path:
        return self.state_dir / ENV_FILE_NAME

    @property
    def ports_file(self) -> Path:
        return self.state_dir / PORTS_FILE_NAME

    @property
    def kafka_home(self) -> Path:
        return self.cache_dir / f"kafka-{KAFKA_VERSION}"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_home / "libs"

    @property
    def ferretdb_home(self) -> Path:
        return self.cache_dir / f"ferretdb-{FERRETDB_VERSION.removeprefix('v')}-{FERRETDB_PATCH_LEVEL}"

    @property
    def ferretdb_binary(self) -> Path:
        return self.ferretdb_home / "ferretdb"


def default_cache_dir(environ: Mapping[str, str]) -> Path:
    """``${TAGLINE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/tagline}``."""
    if explicit := environ.get("TAGLINE_CACHE_DIR"):
        return Path(explicit).expanduser().resolve()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(base).expanduser() / "tagline").resolve()


# --------------------------------------------------------------------------------------------------------
# Pure: configuration rendering and command lines
# --------------------------------------------------------------------------------------------------------


def escape_property_value(value: str) -> str:
    """Escape a value for a java.util.Properties file (read as ISO-8859-1)."""
    out = []
    for char in value.replace("\\", "\\\\"):
        out.append(char if 0x20 <= ord(char) < 0x7F else f"\\u{ord(char):04x}")
    text = "".join(out)
    return "\\" + text if text.startswith(" ") else text


def render_server_properties(*, broker_port: int, controller_port: int, data_dir: Path) -> str:
    """The server.properties of a single-node KRaft cluster that listens on loopback only."""
    broker = f"PLAINTEXT://{LOOPBACK}:{broker_port}"
    controller = f"CONTROLLER://{LOOPBACK}:{controller_port}"
    settings: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": KAFKA_NODE_ID,
        "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{controller_port}",
        "listeners": f"{broker},{controller}",
        "advertised.listeners": f"{broker},{controller}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(data_dir),
        "num.partitions": 6,
        "auto.create.topics.enable": "false",
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        # One node: one __consumer_offsets partition (the default 50 took seconds to create at the first
        # consumer's start, and every group then has the one coordinator that probe_kafka waits for).
        "offsets.topic.num.partitions": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
    }
    lines = ["# Generated by deploy/local/infra.py; rewritten on every start."]
    lines += [f"{key}={escape_property_value(str(value))}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def kafka_java_command(java: str, libs_dir: Path, logs_dir: Path, main_class: str, *args: str) -> list[str]:
    """A JVM command line with the cached Kafka jars on the class path and logging to ``logs_dir``."""
    return [
        java,
        *KAFKA_HEAP,
        *KAFKA_JVM_FLAGS,
        f"-Dlog4j2.configurationFile={KAFKA_LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        f"{libs_dir}/*",
        main_class,
        *args,
    ]


def ferretdb_command(binary: Path, *, port: int, data_dir: Path, process_state_dir: Path) -> list[str]:
    return [
        str(binary),
        "--handler=sqlite",
        f"--sqlite-url=file:{urllib.parse.quote(str(data_dir))}/",
        f"--listen-addr={LOOPBACK}:{port}",
        f"--state-dir={process_state_dir}",
        "--telemetry=disable",
        "--debug-addr=-",  # no debug HTTP listener
        "--log-level=info",
    ]


def new_kafka_cluster_id() -> str:
    """A random cluster id in Kafka's format (URL-safe base64 of a UUID, no padding, no leading '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_env(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


# --------------------------------------------------------------------------------------------------------
# Pure: Kafka wire protocol (just enough for ApiVersions v0, Metadata v4 and FindCoordinator v1)
# --------------------------------------------------------------------------------------------------------

KAFKA_API_METADATA = 3
KAFKA_API_FIND_COORDINATOR = 10
KAFKA_API_VERSIONS = 18
KAFKA_METADATA_VERSION = 4
KAFKA_FIND_COORDINATOR_VERSION = 1
KAFKA_CLIENT_ID = "tagline-infra"
KAFKA_PROBE_GROUP = "tagline-infra-probe"
"""The consumer group the probe asks the coordinator of (asking creates no group)."""
KAFKA_COORDINATOR_NOT_READY = {14: "COORDINATOR_LOAD_IN_PROGRESS", 15: "COORDINATOR_NOT_AVAILABLE"}


@dataclass(frozen=True)
class KafkaBroker:
    node_id: int
    host: str
    port: int


def encode_kafka_request(api_key: int, api_version: int, correlation_id: int, body: bytes) -> bytes:
    """A size-prefixed request with a v1 header (api key, version, correlation id, client id)."""
    client_id = KAFKA_CLIENT_ID.encode()
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(header) + len(body)) + header + body


def encode_metadata_v4_body() -> bytes:
    """Metadata v4 asking about no topic at all (an empty array) and creating none."""
    return struct.pack(">ib", 0, 0)


class KafkaReader:
    """Reads the big-endian primitives of a Kafka response payload (the part after the size)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _unpack(self, fmt: str) -> int:
        try:
            (value,) = struct.unpack_from(fmt, self._data, self._pos)
        except struct.error as exc:
            raise ProtocolError("truncated Kafka response") from exc
        self._pos += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._unpack(">h")

    def int32(self) -> int:
        return self._unpack(">i")

    def nullable_string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        raw = self._data[self._pos : self._pos + length]
        if len(raw) != length:
            raise ProtocolError("truncated Kafka response")
        self._pos += length
        return raw.decode()

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise ProtocolError("unexpected null string in Kafka response")
        return value

    def correlation_id(self, expected: int) -> None:
        actual = self.int32()
        if actual != expected:
            raise ProtocolError(f"correlation id {actual} in response, expected {expected}")


def decode_api_versions_v0(payload: bytes, correlation_id: int) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 response -> {api key: (min version, max version)}."""
    reader = KafkaReader(payload)
    reader.correlation_id(correlation_id)
    error_code = reader.int16()
    if error_code != 0:
        raise ProtocolError(f"ApiVersions failed with error code {error_code}")
    versions: dict[int, tuple[int, int]] = {}
    for _ in range(reader.int32()):
        api_key = reader.int16()
        min_version = reader.int16()
        versions[api_key] = (min_version, reader.int16())
    return versions


def encode_find_coordinator_v1_body(group_id: str) -> bytes:
    """FindCoordinator v1 for a consumer group: the key, then the key type (0 = group)."""
    key = group_id.encode()
    return struct.pack(">h", len(key)) + key + struct.pack(">b", 0)


@dataclass(frozen=True)
class FindCoordinatorAnswer:
    error_code: int
    error_message: str | None
    node_id: int
    host: str
    port: int


def decode_find_coordinator_v1(payload: bytes, correlation_id: int) -> FindCoordinatorAnswer:
    reader = KafkaReader(payload)
    reader.correlation_id(correlation_id)
    reader.int32()  # throttle_time_ms
    error_code = reader.int16()
    error_message = reader.nullable_string()
    return FindCoordinatorAnswer(error_code, error_message, reader.int32(), reader.string(), reader.int32())


def decode_metadata_v4_brokers(payload: bytes, correlation_id: int) -> list[KafkaBroker]:
    """The broker list of a Metadata v4 response (the rest of the response is not needed)."""
    reader = KafkaReader(payload)
    reader.correlation_id(correlation_id)
    reader.int32()  # throttle_time_ms
    brokers = []
    for _ in range(reader.int32()):
        node_id = reader.int32()
        host = reader.string()
        port = reader.int32()
        reader.nullable_string()  # rack
        brokers.append(KafkaBroker(node_id, host, port))
    return brokers


# --------------------------------------------------------------------------------------------------------
# Pure: BSON and MongoDB OP_MSG (just enough for {ping: 1})
# --------------------------------------------------------------------------------------------------------

BsonValue: TypeAlias = "float | int | str | bool | bytes | dict[str, BsonValue] | list[BsonValue] | None"
BsonDocument: TypeAlias = dict[str, BsonValue]

MONGO_OP_MSG = 2013
_BSON_NUMBERS = {
    0x01: struct.Struct("<d"),  # double
    0x09: struct.Struct("<q"),  # UTC datetime (milliseconds)
    0x10: struct.Struct("<i"),  # int32
    0x11: struct.Struct("<Q"),  # timestamp
    0x12: struct.Struct("<q"),  # int64
}
_BSON_OPAQUE_SIZES = {0x07: 12, 0x13: 16}  # ObjectId, Decimal128: kept as raw bytes


def _bson_cstring(text: str) -> bytes:
    raw = text.encode()
    if b"\x00" in raw:
        raise ValueError(f"BSON key contains NUL: {text!r}")
    return raw + b"\x00"


def _bson_element(name: str, value: BsonValue) -> bytes:
    if isinstance(value, bool):
        type_byte, payload = 0x08, b"\x01" if value else b"\x00"
    elif isinstance(value, int):
        small = -(2**31) <= value < 2**31
        type_byte, payload = (0x10, struct.pack("<i", value)) if small else (0x12, struct.pack("<q", value))
    elif isinstance(value, float):
        type_byte, payload = 0x01, struct.pack("<d", value)
    elif isinstance(value, str):
        raw = value.encode() + b"\x00"
        type_byte, payload = 0x02, struct.pack("<i", len(raw)) + raw
    elif isinstance(value, bytes):
        type_byte, payload = 0x05, struct.pack("<ib", len(value), 0) + value
    elif isinstance(value, dict):
        type_byte, payload = 0x03, bson_encode(value)
    elif isinstance(value, list):
        type_byte, payload = 0x04, bson_encode({str(index): item for index, item in enumerate(value)})
    else:
        type_byte, payload = 0x0A, b""
    return bytes([type_byte]) + _bson_cstring(name) + payload


def bson_encode(document: Mapping[str, BsonValue]) -> bytes:
    body = b"".join(_bson_element(name, value) for name, value in document.items())
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _bson_read_value(type_byte: int, data: bytes, pos: int, end: int) -> tuple[BsonValue, int]:
    if number := _BSON_NUMBERS.get(type_byte):
        (value,) = number.unpack_from(data, pos)
        return value, pos + number.size
    if size := _BSON_OPAQUE_SIZES.get(type_byte):
        return data[pos : pos + size], pos + size
    if type_byte in (0x02, 0x05):  # string, binary
        (length,) = struct.unpack_from("<i", data, pos)
        start = pos + 4 + (type_byte == 0x05)  # binary has a subtype byte
        raw = data[start : start + length]
        text_or_bytes: BsonValue = raw[:-1].decode() if type_byte == 0x02 else raw
        return text_or_bytes, start + length
    if type_byte in (0x03, 0x04):  # document, array
        document, after = _bson_read_document(data, pos)
        return (document if type_byte == 0x03 else list(document.values())), after
    if type_byte in (0x08, 0x0A):  # bool, null
        return (data[pos] == 1, pos + 1) if type_byte == 0x08 else (None, pos)
    raise ProtocolError(f"unsupported BSON type 0x{type_byte:02x} at offset {pos} of {end}")


def _bson_read_document(data: bytes, offset: int) -> tuple[BsonDocument, int]:
    try:
        (length,) = struct.unpack_from("<i", data, offset)
        end = offset + length
        if length < 5 or end > len(data) or data[end - 1] != 0:
            raise ProtocolError("malformed BSON document")
        document: BsonDocument = {}
        pos = offset + 4
        while pos < end - 1:
            type_byte = data[pos]
            name_end = data.index(b"\x00", pos + 1, end)
            name = data[pos + 1 : name_end].decode()
            document[name], pos = _bson_read_value(type_byte, data, name_end + 1, end)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed BSON document: {exc}") from exc
    if pos != end - 1:
        raise ProtocolError("malformed BSON document: element overruns the document")
    return document, end


def bson_decode(data: bytes) -> BsonDocument:
    """Decode the BSON document at the start of ``data`` (trailing bytes are ignored)."""
    return _bson_read_document(data, 0)[0]


def encode_op_msg(request_id: int, document: Mapping[str, BsonValue]) -> bytes:
    """An OP_MSG with no flags and one body section (kind 0) holding ``document``."""
    body = struct.pack("<I", 0) + b"\x00" + bson_encode(document)
    return struct.pack("<iiii", 16 + len(body), request_id, 0, MONGO_OP_MSG) + body


def decode_op_msg(message: bytes) -> tuple[int, BsonDocument]:
    """A whole OP_MSG reply (with its length prefix) -> (responseTo, body document)."""
    if len(message) < 21:
        raise ProtocolError("truncated OP_MSG reply")
    _length, _request_id, response_to, op_code = struct.unpack_from("<iiii", message)
    if op_code != MONGO_OP_MSG:
        raise ProtocolError(f"reply has opCode {op_code}, expected OP_MSG ({MONGO_OP_MSG})")
    if message[20] != 0:
        raise ProtocolError(f"first OP_MSG section has kind {message[20]}, expected 0")
    return response_to, bson_decode(message[21:])


# --------------------------------------------------------------------------------------------------------
# Probes: does a server answer at the protocol level? (None = yes, else the reason why not)
# --------------------------------------------------------------------------------------------------------


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        chunks += chunk
    return bytes(chunks)


def _kafka_exchange(
    sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes
) -> bytes:
    sock.sendall(encode_kafka_request(api_key, version, correlation_id, body))
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if not 0 < size < 64 * 1024 * 1024:
        raise ProtocolError(f"implausible Kafka response size {size}")
    return _recv_exact(sock, size)


def _recv_mongo_message(sock: socket.socket) -> bytes:
    header = _recv_exact(sock, 4)
    (length,) = struct.unpack("<i", header)
    if not 21 <= length < 64 * 1024 * 1024:
        raise ProtocolError(f"implausible OP_MSG length {length}")
    return header + _recv_exact(sock, length - 4)


def probe_kafka(port: int) -> str | None:
    """Ready = ApiVersions answers, Metadata lists our (unfenced) broker at ``port``, and the group
    coordinator answers.

    A new Kafka creates ``__consumer_offsets`` when it is first asked for a group coordinator and answers
    COORDINATOR_NOT_AVAILABLE until that topic is led and loaded: consumers started before then log errors
    and wait. Asking here (which also triggers the creation) makes ``up`` return only once a consumer group
    can be joined. With a single ``__consumer_offsets`` partition (``render_server_properties``) every group
    has the same coordinator, so the answer for the probe's group holds for every group.
    """
    try:
        with socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT_S) as sock:
            versions = decode_api_versions_v0(_kafka_exchange(sock, KAFKA_API_VERSIONS, 0, 1, b""), 1)
            for api_key, version, name in (
                (KAFKA_API_METADATA, KAFKA_METADATA_VERSION, "Metadata"),
                (KAFKA_API_FIND_COORDINATOR, KAFKA_FIND_COORDINATOR_VERSION, "FindCoordinator"),
            ):
                low, high = versions.get(api_key, (-1, -1))
                if not low <= version <= high:
                    return f"broker does not support {name} v{version} (supports {low}..{high})"
            reply = _kafka_exchange(
                sock, KAFKA_API_METADATA, KAFKA_METADATA_VERSION, 2, encode_metadata_v4_body()
            )
            brokers = decode_metadata_v4_brokers(reply, 2)
            if not any(broker.node_id == KAFKA_NODE_ID and broker.port == port for broker in brokers):
                return f"broker not registered yet (metadata lists {brokers})"
            reply = _kafka_exchange(
                sock,
                KAFKA_API_FIND_COORDINATOR,
                KAFKA_FIND_COORDINATOR_VERSION,
                3,
                encode_find_coordinator_v1_body(KAFKA_PROBE_GROUP),
            )
            coordinator = decode_find_coordinator_v1(reply, 3)
    except (OSError, ProtocolError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return coordinator_problem(coordinator, port)


def coordinator_problem(answer: FindCoordinatorAnswer, port: int) -> str | None:
    """Why a FindCoordinator answer does not let a consumer join a group yet (None: it does)."""
    if answer.error_code in KAFKA_COORDINATOR_NOT_READY:
        name = KAFKA_COORDINATOR_NOT_READY[answer.error_code]
        return f"group coordinator not available yet ({name}: __consumer_offsets is being created or loaded)"
    if answer.error_code != 0:
        return f"FindCoordinator failed with error code {answer.error_code}: {answer.error_message}"
    if (answer.node_id, answer.port) != (KAFKA_NODE_ID, port):
        return f"group coordinator is node {answer.node_id} at port {answer.port}, not ours"
    return None


def probe_ferretdb(port: int) -> str | None:
    """Ready = ``{ping: 1}`` on the admin database replies ``ok: 1``."""
    request_id = int.from_bytes(os.urandom(3), "big") + 1
    try:
        with socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.sendall(encode_op_msg(request_id, {"ping": 1, "$db": "admin"}))
            response_to, reply = decode_op_msg(_recv_mongo_message(sock))
    except (OSError, ProtocolError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if response_to != request_id:
        return f"reply is for request {response_to}, expected {request_id}"
    if reply.get("ok") != 1:
        return f"ping failed: {reply}"
    return None


# --------------------------------------------------------------------------------------------------------
# Processes, pid files, ports and small file helpers
# --------------------------------------------------------------------------------------------------------


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (released when the process dies, so never stale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"  ({path} does not exist)"
    body = "\n".join(f"  | {line}" for line in content[-lines:]) or "  | (empty)"
    return f"  last lines of {path}:\n{body}"


def process_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    return proc_stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")  # the state follows "(comm)"


def process_cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\x00", b" ").decode(errors="replace")
    except OSError:
        return None


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def stop_process_group(pid: int, label: str) -> None:
    """SIGTERM the process group led by ``pid``, SIGKILL it after STOP_TIMEOUT_S."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    kill: Callable[[int, int], None] = os.killpg if group == pid else os.kill
    started = time.monotonic()
    for sig, grace in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            kill(pid, sig)
        deadline = time.monotonic() + grace
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_S)
        if not process_alive(pid):
            say(f"{label}: stopped (pid {pid}) in {time.monotonic() - started:.1f}s")
            return
        say(f"{label}: still running {grace:.0f}s after {sig.name}")
    raise InfraError(f"{label}: pid {pid} survived SIGKILL")


def spawn_detached(command: Sequence[str], log_file: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (so it outlives this script), output appended to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``LOOPBACK:port`` (with SO_REUSEADDR, as Java and Go servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def ephemeral_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def load_ports(layout: Layout) -> dict[str, int]:
    try:
        raw = json.loads(layout.ports_file.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(name): int(port) for name, port in raw.items()} if isinstance(raw, dict) else {}


def assign_ports(layout: Layout, names: Sequence[str]) -> dict[str, int]:
    """Pick free ports for ``names`` (remembered port, else preferred, else any) and remember them all."""
    ports = load_ports(layout)
    for name in names:
        taken = {port for other, port in ports.items() if other != name}
        candidates = [ports.get(name), PREFERRED_PORTS[name]]
        chosen = next((p for p in candidates if p and p not in taken and port_is_free(p)), None)
        while chosen is None or chosen in taken:
            chosen = ephemeral_port()
        ports[name] = chosen
    write_atomically(layout.ports_file, json.dumps(ports, indent=2, sort_keys=True) + "\n")
    return ports


def find_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise InfraError(f"`{name}` not found on PATH: {install_hint}")
    return path


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (candidate := Path(java_home) / "bin" / "java").is_file():
        return str(candidate)
    return find_tool(
        "java",
        "install a Java 17+ runtime (Debian: `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME",
    )


def run_logged(
    command: Sequence[str], *, cwd: Path, log_file: Path, what: str, env: Mapping[str, str] | None = None
) -> str:
    """Run a short-lived command, appending its output to ``log_file``; return its stdout.

    Raise InfraError with the log's tail if it fails.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        result = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=log, env=env, check=False)
        log.write(result.stdout)
    if result.returncode != 0:
        raise InfraError(
            f"{what} failed (exit code {result.returncode}): {' '.join(command)}\n{tail(log_file)}"
        )
    return result.stdout.decode(errors="replace")


# --------------------------------------------------------------------------------------------------------
# Cached artifacts: built into a temporary dir, renamed into place when complete
# --------------------------------------------------------------------------------------------------------


def install_atomically(target: Path, build: Callable[[Path], None]) -> None:
    """Run ``build(tmp)`` into a fresh dir beside ``target``, then rename it to ``target``.

    Call with the artifact's lock held. Leftovers of interrupted builds are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{target.name}.tmp*"):
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    tmp.mkdir()
    try:
        build(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def pom_digest() -> str:
    return hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()


def kafka_libs_ready(layout: Layout) -> bool:
    digest_file = layout.kafka_home / "pom.sha256"
    return digest_file.is_file() and digest_file.read_text().strip() == pom_digest()


def ensure_kafka_libs(layout: Layout) -> None:
    with file_lock(layout.cache_dir / ".locks" / f"{layout.kafka_home.name}.lock"):
        if kafka_libs_ready(layout):
            return
        mvn = find_tool(
            "mvn", "install Maven 3.6+ (Debian: `apt-get install maven`); needed the first time only"
        )
        say(f"kafka: downloading {KAFKA_VERSION} jars from Maven Central (first time only)…")
        started = time.monotonic()

        def download(tmp: Path) -> None:
            goal = ["dependency:copy-dependencies", f"-DoutputDirectory={tmp / 'libs'}"]
            run_logged(
                [mvn, "-q", "-B", "-f", str(KAFKA_POM), *goal],
                cwd=KAFKA_POM.parent,
                log_file=layout.cache_dir / "logs" / f"{layout.kafka_home.name}-download.log",
                what="kafka: mvn dependency:copy-dependencies",
            )
            (tmp / "pom.sha256").write_text(pom_digest() + "\n")

        install_atomically(layout.kafka_home, download)
        say(f"kafka: jars cached in {layout.kafka_libs} ({time.monotonic() - started:.0f}s)")


def _make_tree_writable(root: Path) -> None:
    """Files copied from the Go module cache are read-only: add the owner's write bit."""
    for path in (root, *root.rglob("*")):
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


FERRETDB_PATCH_LEVEL = "idx1"
"""Bumped whenever :data:`FERRETDB_PATCHES` change, so cached binaries built without them are rebuilt."""

FERRETDB_PATCHES: tuple[tuple[str, str, str], ...] = (
    # FerretDB 1.24's SQLite backend creates the unique _id index on the expression `_ferretdb_sjson->"_id"`
    # but queries, updates and deletes by _id filter on `_ferretdb_sjson->'$._id'`. SQLite only uses an
    # expression index for the identical expression, so every lookup by _id scanned the whole table
    # (~2.4 µs a row: 48 ms per update_one at 20,000 documents). Both expressions select the same value;
    # filtering on the indexed spelling makes `{_id: <string or ObjectId>}` lookups O(log n).
    (
        "internal/backends/sqlite/metadata/metadata.go",
        "IDColumn = DefaultColumn + \"->'$._id'\"",
        'IDColumn = DefaultColumn + `->"_id"`',
    ),
)


def patch_ferretdb(source: Path) -> None:
    """Apply :data:`FERRETDB_PATCHES`; fails loudly if the upstream text is not there (a version bump)."""
    for relative, old, new in FERRETDB_PATCHES:
        path = source / relative
        text = path.read_text()
        if text.count(old) != 1:
            raise RuntimeError(f"ferretdb: cannot patch {relative}: {old!r} not found exactly once")
        path.write_text(text.replace(old, new))


def build_ferretdb(go: str, cache_dir: Path, tmp: Path) -> None:
    """Download the FerretDB module, add the version file its zip lacks, patch it and build it into ``tmp``.

    The SQLite driver is pure Go (modernc.org/sqlite), so cgo is off and no C compiler is needed.
    """
    module = f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"
    log_file = cache_dir / "logs" / f"ferretdb-{FERRETDB_VERSION.removeprefix('v')}-build.log"
    env = {**os.environ, "GOWORK": "off", "CGO_ENABLED": "0"}
    download = [go, "mod", "download", "-json", module]
    info = json.loads(
        run_logged(download, cwd=cache_dir, log_file=log_file, what="ferretdb: go mod download", env=env)
    )
    source = tmp / "src"
    shutil.copytree(info["Dir"], source)
    _make_tree_writable(source)
    (source / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
    patch_ferretdb(source)
    run_logged(
        [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmp / "ferretdb"), "./cmd/ferretdb"],
        cwd=source,
        log_file=log_file,
        what="ferretdb: go build",
        env=env,
    )
    shutil.rmtree(source)


def ensure_ferretdb_binary(layout: Layout) -> None:
    with file_lock(layout.cache_dir / ".locks" / f"{layout.ferretdb_home.name}.lock"):
        if layout.ferretdb_binary.is_file():
            return
        go = find_tool("go", "install Go 1.24 or newer (https://go.dev/dl/); needed the first time only")
        say(f"ferretdb: building {FERRETDB_VERSION} from the Go module proxy (first time only, ~1-2 min)…")
        started = time.monotonic()
        install_atomically(layout.ferretdb_home, lambda tmp: build_ferretdb(go, layout.cache_dir, tmp))
        say(f"ferretdb: built {layout.ferretdb_binary} ({time.monotonic() - started:.0f}s)")


# --------------------------------------------------------------------------------------------------------
# The two servers
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """What the generic up/down/status code needs to know about one server."""

    key: str  # the --only value
    label: str  # used in messages and file names
    cmdline_marker: str  # part of the server's command line, to recognise it behind a pid
    port_name: str  # the port clients use (a key of PREFERRED_PORTS)
    extra_port_names: tuple[str, ...]
    env_key: str
    env_url: Callable[[int], str]
    data_dirs: tuple[str, ...]  # relative to the state dir; kept by down and restart, deleted by reset
    log_files: tuple[str, ...]  # relative to the logs dir; shown when the start fails
    start_timeout_s: float
    prepare: Callable[[Layout], None]  # make sure the tools and cached artifacts exist
    start: Callable[[Layout, Mapping[str, int]], subprocess.Popen[bytes]]
    probe: Callable[[int], str | None]

    def pid_file(self, layout: Layout) -> Path:
        return layout.state_dir / f"{self.label}.pid"

    def running_pid(self, layout: Layout) -> int | None:
        """The pid from the pid file if that process is alive and is this server of this state dir."""
        pid = read_pid(self.pid_file(layout))
        if pid is None or not process_alive(pid):
            return None
        cmdline = process_cmdline(pid)
        in_state_dir = f"{layout.state_dir}{os.sep}"
        if cmdline is not None and (self.cmdline_marker not in cmdline or in_state_dir not in cmdline):
            return None  # the pid was reused by another process
        return pid


def prepare_kafka(layout: Layout) -> None:
    find_java()
    ensure_kafka_libs(layout)


def format_kafka_storage(layout: Layout, java: str, properties: Path) -> None:
    """Format the (empty) log dir as a new single-voter cluster; the tool logs to its own dir."""
    log_file = layout.logs_dir / "kafka-format.log"
    tool_logs_dir = layout.logs_dir / "kafka-format"  # keeps its config dump out of the broker's server.log
    log_file.unlink(missing_ok=True)
    shutil.rmtree(tool_logs_dir, ignore_errors=True)
    cluster_id = new_kafka_cluster_id()
    args = ["format", "--standalone", "-t", cluster_id, "-c", str(properties), "--ignore-formatted"]
    run_logged(
        kafka_java_command(java, layout.kafka_libs, tool_logs_dir, "kafka.tools.StorageTool", *args),
        cwd=layout.state_dir,
        log_file=log_file,
        what="kafka: formatting the storage",
    )


def start_kafka(layout: Layout, ports: Mapping[str, int]) -> subprocess.Popen[bytes]:
    java = find_java()
    properties = layout.state_dir / "kafka.properties"
    config = render_server_properties(
        broker_port=ports["kafka"],
        controller_port=ports["kafka_controller"],
        data_dir=layout.state_dir / "kafka-data",
    )
    write_atomically(properties, config)
    if not (layout.state_dir / "kafka-data" / "meta.properties").exists():  # kept data is formatted already
        format_kafka_storage(layout, java, properties)
    command = kafka_java_command(
        java, layout.kafka_libs, layout.logs_dir / "kafka", "kafka.Kafka", str(properties)
    )
    return spawn_detached(command, layout.logs_dir / "kafka.out", cwd=layout.state_dir)


def start_ferretdb(layout: Layout, ports: Mapping[str, int]) -> subprocess.Popen[bytes]:
    data_dir = layout.state_dir / "ferretdb-data"
    process_state_dir = layout.state_dir / "ferretdb-state"
    data_dir.mkdir(parents=True, exist_ok=True)
    process_state_dir.mkdir(parents=True, exist_ok=True)
    command = ferretdb_command(
        layout.ferretdb_binary, port=ports["ferretdb"], data_dir=data_dir, process_state_dir=process_state_dir
    )
    return spawn_detached(command, layout.logs_dir / "ferretdb.log", cwd=layout.state_dir)


KAFKA = Server(
    key="kafka",
    label="kafka",
    cmdline_marker="kafka.Kafka",
    port_name="kafka",
    extra_port_names=("kafka_controller",),
    env_key="KAFKA_BOOTSTRAP_SERVERS",
    env_url=lambda port: f"{LOOPBACK}:{port}",
    data_dirs=("kafka-data",),
    log_files=("kafka.out", "kafka/server.log"),
    start_timeout_s=KAFKA_START_TIMEOUT_S,
    prepare=prepare_kafka,
    start=start_kafka,
    probe=probe_kafka,
)
FERRETDB = Server(
    key="mongo",
    label="ferretdb",
    cmdline_marker="--handler=sqlite",
    port_name="ferretdb",
    extra_port_names=(),
    env_key="MONGODB_URL",
    env_url=lambda port: f"mongodb://{LOOPBACK}:{port}/",
    data_dirs=("ferretdb-data", "ferretdb-state"),
    log_files=("ferretdb.log",),
    start_timeout_s=FERRETDB_START_TIMEOUT_S,
    prepare=ensure_ferretdb_binary,
    start=start_ferretdb,
    probe=probe_ferretdb,
)
SERVERS = (KAFKA, FERRETDB)


# --------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------


def remove_data(layout: Layout, server: Server) -> None:
    for name in server.data_dirs:
        shutil.rmtree(layout.state_dir / name, ignore_errors=True)


def start_server(layout: Layout, server: Server, ports: Mapping[str, int]) -> subprocess.Popen[bytes]:
    """Start ``server`` on its data (kept from the last run, or new), with fresh logs, and record its pid."""
    server.pid_file(layout).unlink(missing_ok=True)  # stale, or we would not be starting it
    for name in server.log_files:
        (layout.logs_dir / name).unlink(missing_ok=True)
    say(f"{server.label}: starting on {LOOPBACK}:{ports[server.port_name]}…")
    child = server.start(layout, ports)
    write_atomically(server.pid_file(layout), f"{child.pid}\n")
    return child


def wait_until_ready(
    layout: Layout, server: Server, pid: int, port: int, child: subprocess.Popen[bytes] | None
) -> None:
    """Probe until the server answers; on timeout or early exit stop it (if we started it) and raise."""
    started = time.monotonic()
    while True:
        reason = server.probe(port)
        if reason is None:
            say(f"{server.label}: ready at {LOOPBACK}:{port} (pid {pid}, {time.monotonic() - started:.1f}s)")
            return
        exited = child.poll() is not None if child is not None else not process_alive(pid)
        timed_out = time.monotonic() - started > server.start_timeout_s
        if exited or timed_out:
            break
        time.sleep(POLL_INTERVAL_S)
    logs = "\n".join(tail(layout.logs_dir / name) for name in server.log_files)
    if exited:
        code = f" with code {child.returncode}" if child is not None else ""
        problem = f"exited{code} before answering"
    else:
        problem = f"did not answer within {server.start_timeout_s:.0f}s (last probe: {reason})"
    if child is not None:
        stop_process_group(pid, server.label)
        server.pid_file(layout).unlink(missing_ok=True)
    else:
        problem += f"; it was already running: try `{sys.argv[0]} down --state-dir {layout.state_dir}`"
    raise InfraError(f"{server.label} (pid {pid}, port {port}) {problem}\n{logs}")


def write_env_file(layout: Layout, ports: Mapping[str, int]) -> str:
    """Write the env lines of the servers running from this state dir; return the text."""
    values = {
        server.env_key: server.env_url(ports[server.port_name])
        for server in SERVERS
        if server.running_pid(layout) is not None
    }
    text = render_env(values)
    write_atomically(layout.env_file, text)
    return text


def cmd_up(layout: Layout, only: str | None) -> int:
    wanted = [server for server in SERVERS if only in (None, server.key)]
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(layout.state_dir / ".lock"):
        pids: dict[str, int] = {}
        children: dict[str, subprocess.Popen[bytes]] = {}
        for server in wanted:  # start what is missing (Kafka boots while FerretDB builds)
            pid = server.running_pid(layout)
            if pid is not None:
                say(f"{server.label}: already running (pid {pid})")
                pids[server.key] = pid
                continue
            server.prepare(layout)
            ports = assign_ports(layout, (server.port_name, *server.extra_port_names))
            children[server.key] = start_server(layout, server, ports)
            pids[server.key] = children[server.key].pid
        ports = load_ports(layout)
        for server in wanted:
            wait_until_ready(
                layout, server, pids[server.key], ports[server.port_name], children.get(server.key)
            )
        text = write_env_file(layout, ports)
    say(f"wrote {layout.env_file}:")
    print(text, end="", flush=True)
    return 0


def stop_servers(layout: Layout, *, wipe: bool) -> None:
    """Stop every server of the state dir; with ``wipe`` also delete their data and the env file."""
    with file_lock(layout.state_dir / ".lock"):
        for server in SERVERS:
            pid = server.running_pid(layout)
            if pid is None:
                say(f"{server.label}: not running")
            else:
                stop_process_group(pid, server.label)
            server.pid_file(layout).unlink(missing_ok=True)
            if wipe:
                remove_data(layout, server)
                say(f"{server.label}: data deleted")
        layout.env_file.unlink(missing_ok=True)


def cmd_down(layout: Layout) -> int:
    if not layout.state_dir.is_dir():
        say(f"nothing to stop: {layout.state_dir} does not exist")
        return 0
    stop_servers(layout, wipe=False)
    say(f"data kept in {layout.state_dir} (`reset` deletes it)")
    return 0


def cmd_reset(layout: Layout) -> int:
    if not layout.state_dir.is_dir():
        say(f"nothing to reset: {layout.state_dir} does not exist")
        return 0
    stop_servers(layout, wipe=True)
    return 0


def cmd_status(layout: Layout) -> int:
    ports = load_ports(layout)
    started = answering = 0
    for server in SERVERS:
        pid = server.running_pid(layout)
        if pid is None:
            stale = " (stale pid file)" if server.pid_file(layout).exists() else ""
            say(f"{server.label}: not running{stale}")
            started += stale != ""
            continue
        started += 1
        port = ports.get(server.port_name, 0)
        reason = server.probe(port)
        answering += reason is None
        state = "answering" if reason is None else f"NOT answering: {reason}"
        say(f"{server.label}: running (pid {pid}) at {LOOPBACK}:{port}, {state}")
    return 0 if started and answering == started else 1


def cmd_env(layout: Layout) -> int:
    try:
        text = layout.env_file.read_text()
    except FileNotFoundError:
        print(f"no {layout.env_file}: start the servers with `python3 {sys.argv[0]} up`", file=sys.stderr)
        return 1
    print(text, end="", flush=True)
    return 0


def cmd_restart(layout: Layout, key: str, *, kill: bool, down_s: float) -> int:
    """Stop one server and start it again with its data (a broker or database outage, not a reset)."""
    server = next(s for s in SERVERS if s.key == key)
    with file_lock(layout.state_dir / ".lock"):
        pid = server.running_pid(layout)
        if pid is None:
            raise InfraError(f"{server.label} is not running from {layout.state_dir}: nothing to restart")
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while process_alive(pid):
                time.sleep(POLL_INTERVAL_S)
            say(f"{server.label}: killed (pid {pid})")
        else:
            stop_process_group(pid, server.label)
        server.pid_file(layout).unlink(missing_ok=True)
        time.sleep(down_s)
        ports = load_ports(layout)
        say(f"{server.label}: starting again on {LOOPBACK}:{ports[server.port_name]} with its data…")
        child = server.start(layout, ports)
        write_atomically(server.pid_file(layout), f"{child.pid}\n")
        wait_until_ready(layout, server, child.pid, ports[server.port_name], child)
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"runtime state: data, logs, pids, ports, env file (default: {DEFAULT_STATE_DIR})",
    )
    parser = argparse.ArgumentParser(
        description="Start/stop the local Kafka and FerretDB servers without Docker (see the docstring)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="start the servers and wait until they answer")
    up.add_argument("--only", choices=[server.key for server in SERVERS], help="start only this server")
    commands.add_parser("down", parents=[common], help="stop the servers; their data is kept for the next up")
    commands.add_parser("reset", parents=[common], help="stop the servers and delete their data")
    commands.add_parser("status", parents=[common], help="exit 0 if every started server answers")
    commands.add_parser("env", parents=[common], help="print the env file")
    restart = commands.add_parser(
        "restart", parents=[common], help="stop one server and start it again, keeping its data"
    )
    restart.add_argument("server", choices=[server.key for server in SERVERS])
    restart.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    restart.add_argument("--down-s", type=float, default=0.0, help="seconds to stay down")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    layout = Layout(state_dir=args.state_dir.expanduser().resolve(), cache_dir=default_cache_dir(os.environ))
    commands: dict[str, Callable[[], int]] = {
        "up": lambda: cmd_up(layout, args.only),
        "down": lambda: cmd_down(layout),
        "reset": lambda: cmd_reset(layout),
        "status": lambda: cmd_status(layout),
        "restart": lambda: cmd_restart(layout, args.server, kill=args.kill, down_s=args.down_s),
        "env": lambda: cmd_env(layout),
    }
    try:
        return commands[args.command]()
    except InfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Start and stop Tagline's local Kafka and MongoDB-compatible servers without Docker.

Where a Docker engine is available, `docker compose up` is the usual way. This script starts the same kind of
servers from the package registries instead, using only the Python 3.11 standard library (so it runs with
plain ``python3`` before any virtualenv exists):

* Apache Kafka 4.2.0, a single KRaft node (broker and controller in one JVM), from jars that Maven resolves
  from Maven Central with ``deploy/kafka/pom.xml``; it logs through ``deploy/kafka/log4j2.properties``.
  Needs Java 17+ (and Maven the first time).
* PostgreSQL (Debian's package, 15 on Debian 12: ``apt-get install -y postgresql``), a cluster of the state
  dir's own: ``initdb`` on the first start, then ``postgres`` with every setting on its command line
  (``postgres_command``, ``POSTGRES_SETTINGS``): 127.0.0.1 only, its unix socket in the state dir, trust
  authentication (a local development server: any local account may connect as any role), fsync and
  synchronous commits on. As root it runs as the ``postgres`` account (initdb and postgres refuse root),
  which must be able to enter the state dir.
* FerretDB v1.24.2 (the MongoDB wire protocol) on that PostgreSQL (``--handler=postgresql``, its own role and
  database ``ferretdb``), built with Go from the Go module proxy with the patches of ``FERRETDB_PATCHES``
  (atomic update/findAndModify, index-served ``_id`` and equality filters, bulk writes that complete, no
  ERROR record per duplicate key; each says why). Needs Go 1.24+ the first time.

Usage (from the repository root)::

    python3 deploy/local/infra.py up     [--state-dir DIR] [--only kafka|postgres|mongo]
    python3 deploy/local/infra.py down   [--state-dir DIR]   # stop; the data is kept
    python3 deploy/local/infra.py reset  [--state-dir DIR]   # stop and delete the data
    python3 deploy/local/infra.py restart kafka|postgres|mongo [--state-dir DIR] [--kill] [--down-s N]
    python3 deploy/local/infra.py status [--state-dir DIR]   # exit 0 if everything answers, 1 otherwise
    python3 deploy/local/infra.py env    [--state-dir DIR]   # prints the env file

``up`` is idempotent: servers that already run and answer are left alone; ``--only mongo`` starts FerretDB
and the PostgreSQL it needs. It starts Kafka and PostgreSQL, builds FerretDB meanwhile if needed, and starts
FerretDB once PostgreSQL answers and FerretDB's role and database exist. It waits until each server answers
at the protocol level (Kafka: ApiVersions, a Metadata answer that lists the broker and a FindCoordinator
answer for a consumer group, so a consumer can join a group as soon as ``up`` returns; PostgreSQL: a session
that reaches ReadyForQuery; FerretDB: a MongoDB ``ping`` over OP_MSG), then writes ``<state dir>/infra.env``::

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:<port>
    MONGODB_URL=mongodb://127.0.0.1:<port>/

with a line for each server running from that state dir (after ``up --only kafka`` on a fresh state dir, only
the Kafka line; the services never talk to PostgreSQL, ``status`` prints its URL for psql). Load it with e.g.
``set -a; . .local/infra/infra.env; set +a``. If a server does not answer in time (120 s for Kafka, 60 s for
PostgreSQL and FerretDB), ``up`` stops it, prints the tail of its log and exits 1.

Data survives: ``up`` starts each server on the data of its last run (Kafka's formatted log dir with its
cluster id, PostgreSQL's cluster, which holds FerretDB's data), or on new data the first time; ``down`` stops
the servers, FerretDB first and Kafka last (SIGTERM to the process group; PostgreSQL a fast shutdown, SIGINT
to the postmaster; SIGKILL after 20 s), and keeps their data; ``reset`` stops them and deletes it (logs and
ports are kept). ``restart`` is for fault drills (``make chaos``): it stops one server (or with ``--kill``
SIGKILLs it with every process it started, a crash), keeps it down ``--down-s`` seconds and starts it again
on the same port with its data. A write FerretDB acknowledged survives ``kill -9`` of FerretDB or PostgreSQL.

Files:

* Downloads and builds are cached by version in ``$TAGLINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/tagline``,
  else ``~/.cache/tagline``: a second ``up``, even from a fresh clone, neither downloads nor builds.
* Runtime state lives in the state dir (default ``<repo root>/.local/infra``): data dirs (``kafka-data``,
  ``postgres-data``; ``postgres-run`` holds PostgreSQL's socket, ``ferretdb-state`` FerretDB's own small
  state), logs (``logs/``: ``kafka.out``, ``kafka/``, ``postgres.log``, ``ferretdb.log``), pid files, the
  chosen ports (``ports.json``, reused by later starts) and ``infra.env``.
  Ports are free loopback ports, preferably 19092 (Kafka), 19093 (Kafka controller), 15432 (PostgreSQL) and
  27117 (FerretDB); several state dirs can run side by side on different ports. ``make run`` and
  ``make infra-up`` use the default one; the tests (``deploy/local/with-infra``) use ``.local/test-infra``
  and the fault drill ``.local/chaos/infra``, so neither touches the data of ``make run``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
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
from typing import Any, TypeAlias

KAFKA_VERSION = "4.2.0"
FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
FERRETDB_VERSION = "v1.24.2"

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
KAFKA_POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
KAFKA_LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.properties"
DEFAULT_STATE_DIR = REPO_ROOT / ".local" / "infra"

LOOPBACK = "127.0.0.1"
PREFERRED_PORTS: Mapping[str, int] = {
    "kafka": 19092,
    "kafka_controller": 19093,
    "postgres": 15432,
    "ferretdb": 27117,
}
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
POSTGRES_START_TIMEOUT_S = 60.0
FERRETDB_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.25
LOG_TAIL_LINES = 40

ENV_FILE_NAME = "infra.env"
PORTS_FILE_NAME = "ports.json"

POSTGRES_OS_USER = "postgres"
"""The account PostgreSQL runs as when this script runs as root (initdb and postgres refuse root)."""
POSTGRES_SUPERUSER = "postgres"
FERRETDB_PG_ROLE = "ferretdb"
FERRETDB_PG_DATABASE = "ferretdb"
FERRETDB_PG_SETUP_SQL = """\
SELECT 'CREATE ROLE ferretdb LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferretdb')\\gexec
SELECT 'CREATE DATABASE ferretdb OWNER ferretdb'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'ferretdb')\\gexec
"""
"""psql script run on every start (idempotent): FERRETDB_PG_ROLE and FERRETDB_PG_DATABASE."""
FERRETDB_POOL_MAX_CONNS = 50
"""FerretDB's PostgreSQL connection pool (its default, set explicitly so max_connections can be sized)."""
POSTGRES_SETTINGS: Mapping[str, str | int] = {
    # Room for two FerretDBs' pools (a benchmark may point a second one at the same data), psql sessions
    # and the superuser's reserved 3: the pools must never exhaust the server (two pools of 50 did at 100).
    "max_connections": 200,
    # A dev server beside Kafka, the services and other state dirs on a 24 GiB, 2-core machine.
    "shared_buffers": "512MB",
    "effective_cache_size": "4GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "128MB",
    "max_parallel_workers_per_gather": 0,  # two cores: a parallel scan only competes with the other queries
    # Durability: a write FerretDB acknowledged is on disk, so `kill -9` of either server loses nothing.
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    # Log server events (start, stop, checkpoints, crash recovery, FATAL/PANIC), not each failed statement:
    # clients' errors go back to FerretDB, which logs them with their query (duplicate keys, which the
    # services expect, at DEBUG: FERRETDB_PATCHES, patch 5).
    "log_min_messages": "log",
    "log_min_error_statement": "panic",
    "lc_messages": "C",
    "timezone": "UTC",
}


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


def ferretdb_postgresql_url(postgres_port: int) -> str:
    """FerretDB's PostgreSQL URL: its own role and database, trust auth on loopback, an explicit pool size."""
    query = urllib.parse.urlencode({"pool_max_conns": FERRETDB_POOL_MAX_CONNS})
    return f"postgres://{FERRETDB_PG_ROLE}@{LOOPBACK}:{postgres_port}/{FERRETDB_PG_DATABASE}?{query}"


def ferretdb_command(binary: Path, *, port: int, postgres_port: int, process_state_dir: Path) -> list[str]:
    return [
        str(binary),
        "--handler=postgresql",
        f"--postgresql-url={ferretdb_postgresql_url(postgres_port)}",
        f"--listen-addr={LOOPBACK}:{port}",
        f"--state-dir={process_state_dir}",
        "--telemetry=disable",
        "--debug-addr=-",  # no debug HTTP listener
        # error: warn adds a 20-line dump of every failed command (pymongo's endSessions, unknown to FerretDB
        # 1.24, fails at every client's close) and info two lines per client connection
        "--log-level=error",
    ]


UNIX_SOCKET_PATH_MAX = 107
"""sun_path holds 108 bytes with the terminating NUL: PostgreSQL refuses a longer socket path."""


def postgres_socket_dir(run_dir: Path, port: int) -> Path | None:
    """``run_dir`` if PostgreSQL's socket fits in it, else None (then it listens on TCP only)."""
    return run_dir if len(str(run_dir / f".s.PGSQL.{port}").encode()) <= UNIX_SOCKET_PATH_MAX else None


def postgres_command(bindir: Path, *, data_dir: Path, port: int, socket_dir: Path | None) -> list[str]:
    """The postmaster's command line: every setting on it (rewritten on every start, like Kafka's)."""
    settings: dict[str, str | int] = {
        "listen_addresses": LOOPBACK,
        "port": port,
        "unix_socket_directories": str(socket_dir) if socket_dir is not None else "",
        **POSTGRES_SETTINGS,
    }
    command = [str(bindir / "postgres"), "-D", str(data_dir)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    return command


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


PG_PROTOCOL_3_0 = 196608


def encode_pg_startup(user: str, database: str) -> bytes:
    """A PostgreSQL StartupMessage (protocol 3.0): length, version, then NUL-terminated name/value pairs."""
    params = b"".join(_bson_cstring(text) for text in ("user", user, "database", database)) + b"\x00"
    body = struct.pack(">i", PG_PROTOCOL_3_0) + params
    return struct.pack(">i", len(body) + 4) + body


def decode_pg_error(body: bytes) -> str:
    """An ErrorResponse body (type byte + NUL-terminated text, repeated, then NUL) -> 'CODE: message'."""
    fields = {}
    for field in body.split(b"\x00"):
        if field:
            fields[field[:1]] = field[1:].decode(errors="replace")
    return f"{fields.get(b'C', '?')}: {fields.get(b'M', '?')}"


def _recv_pg_message(sock: socket.socket) -> tuple[bytes, bytes]:
    """One backend message: (type byte, body)."""
    kind = _recv_exact(sock, 1)
    (length,) = struct.unpack(">i", _recv_exact(sock, 4))
    if not 4 <= length < 1024 * 1024:
        raise ProtocolError(f"implausible PostgreSQL message length {length}")
    return kind, _recv_exact(sock, length - 4)


def probe_postgres(port: int) -> str | None:
    """Ready = a session as the superuser (trust auth) reaches ReadyForQuery.

    While it starts or recovers after a crash, PostgreSQL answers 57P03 ("the database system is starting
    up"): not ready yet.
    """
    try:
        with socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.sendall(encode_pg_startup(POSTGRES_SUPERUSER, "postgres"))
            while True:
                kind, body = _recv_pg_message(sock)
                if kind == b"E":
                    return f"PostgreSQL refused the session: {decode_pg_error(body)}"
                if kind == b"R" and body[:4] != b"\x00\x00\x00\x00":
                    return (
                        f"PostgreSQL asks for authentication ({body[:4].hex()}), expected trust on loopback"
                    )
                if kind == b"Z":
                    sock.sendall(b"X" + struct.pack(">i", 4))  # Terminate
                    return None
    except (OSError, ProtocolError, struct.error) as exc:
        return f"{type(exc).__name__}: {exc}"


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


def stop_process_group(
    pid: int, label: str, stop_signal: signal.Signals = signal.SIGTERM, *, leader_only: bool = False
) -> None:
    """Send ``stop_signal`` to the process group led by ``pid`` (with ``leader_only`` to ``pid`` alone: a
    server that stops its own children); after STOP_TIMEOUT_S SIGKILL it and every process it started."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    started = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if group == pid and not leader_only else os.kill)(pid, stop_signal)
    deadline = started + STOP_TIMEOUT_S
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL_S)
    if process_alive(pid):
        say(f"{label}: still running {STOP_TIMEOUT_S:.0f}s after {stop_signal.name}")
        if not kill_process_family(pid):
            raise InfraError(f"{label}: pid {pid} or one of its children survived SIGKILL")
    say(f"{label}: stopped (pid {pid}) in {time.monotonic() - started:.1f}s")


def kill_process_family(pid: int, timeout_s: float = 10.0) -> bool:
    """SIGKILL ``pid`` first, then its process group and every descendant; True once all are gone.

    A crash, as fault drills want it. PostgreSQL's children each start a session of their own, so its
    process group is the postmaster alone; and a new postmaster refuses to start while a backend of the
    killed one still holds its shared memory.
    """
    family = process_family(pid)
    for member in family:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while not all(process_gone(member) for member in family):
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


def process_gone(pid: int) -> bool:
    """True once ``pid`` is reaped, not merely a zombie: a restarted PostgreSQL reads the killed postmaster's
    pid from its lock file and refuses to start while any process, a zombie included, has that pid."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def process_family(pid: int) -> list[int]:
    """``pid``, then the members of its process group and all their descendants (Linux /proc)."""
    parents: dict[int, tuple[int, int]] = {}  # pid -> (parent pid, process group)
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()  # state, ppid, pgrp, ...
            parents[int(entry.name)] = (int(fields[1]), int(fields[2]))
    family = {pid} | {member for member, (_, group) in parents.items() if group == pid}
    while True:
        children = {member for member, (parent, _) in parents.items() if parent in family} - family
        if not children:
            return [pid, *sorted(family - {pid})]
        family |= children


def spawn_detached(
    command: Sequence[str], log_file: Path, cwd: Path, *, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (so it outlives this script), output appended to ``log_file``.

    With ``user`` (this script runs as root), the command runs as that user, with its groups only.
    """
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
            **run_as(user),
        )


def run_as(user: str | None) -> dict[str, Any]:
    """Popen arguments that run the child as ``user`` (uid, primary group, supplementary groups)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {
        "user": entry.pw_uid,
        "group": entry.pw_gid,
        "extra_groups": os.getgrouplist(user, entry.pw_gid),
        "env": {**os.environ, "HOME": entry.pw_dir, "USER": user, "LOGNAME": user},
    }


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
    command: Sequence[str],
    *,
    cwd: Path,
    log_file: Path,
    what: str,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    stdin_text: str | None = None,
) -> str:
    """Run a short-lived command (as ``user`` if given), appending its output to ``log_file``; return its
    stdout.

    Raise InfraError with the log's tail if it fails.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    options = run_as(user)
    if env is not None:
        options["env"] = env
    with log_file.open("ab") as log:
        result: subprocess.CompletedProcess[bytes] = subprocess.run(
            command,
            cwd=cwd,
            input=None if stdin_text is None else stdin_text.encode(),
            stdout=subprocess.PIPE,
            stderr=log,
            check=False,
            **options,
        )
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


def _go(text: str) -> str:
    """Go source written here with 4-space indents -> FerretDB's tab-indented text.

    The text starts with a newline and ends with the indentation of its closing quotes; a line indented
    4*n spaces beyond those quotes gets n tabs (blank lines stay empty, as gofmt leaves them).
    """
    *lines, closing = text.split("\n")
    if lines[0] != "" or closing.strip():
        raise ValueError("_go text must start with a newline and end with its closing quotes' indentation")
    base = len(closing)
    out = []
    for line in lines[1:]:
        body = line.lstrip(" ")
        depth = (len(line) - len(body) - base) // 4
        out.append("\t" * depth + body if body else "")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class SourcePatch:
    """One change to FerretDB's source: ``old`` (found once) becomes ``new``; ``old=None`` adds a file."""

    path: str
    old: str | None
    new: str


FERRETDB_PATCH_LEVEL = "pg3"
"""Bumped whenever :data:`FERRETDB_PATCHES` change, so cached binaries built without them are rebuilt."""

_WRITE_LOCKS_GO = _go(
    """
    // Added by Tagline's deploy/local/infra.py (patch 1, see FERRETDB_PATCHES there).

    package handler

    import (
        "sync"

        "github.com/FerretDB/FerretDB/internal/types"
    )

    // taglineWriteLocks serialises the read-modify-write of update and findAndModify statements.
    //
    // FerretDB 1.24 runs them as: query the matching documents, apply the operators in Go, write each one
    // back by _id, with no lock and no recheck, so two concurrent statements on one document both read the
    // old state and one write is lost. A statement whose filter names one _id (equality on a string or
    // ObjectId) takes the read side of its collection's lock and a lock of its own document; any other
    // statement takes the write side of its collection's lock. Either way no two statements that can
    // touch the same document overlap, in this FerretDB process.
    var taglineWriteLocks = writeLocks{
        colls: map[string]*collectionLock{},
        docs:  map[string]*documentLock{},
    }

    type writeLocks struct {
        mu    sync.Mutex
        colls map[string]*collectionLock
        docs  map[string]*documentLock
    }

    // Entries are counted and removed when unused, so a million updated documents leave no million mutexes.
    type collectionLock struct {
        rw   sync.RWMutex
        refs int
    }

    type documentLock struct {
        mu   sync.Mutex
        refs int
    }

    // acquire locks for one update or findAndModify statement with this filter; call the result to unlock.
    func (l *writeLocks) acquire(db, collection string, filter *types.Document) func() {
        collKey := db + "\\x00" + collection
        id, oneDocument := taglineFilterID(filter)
        docKey := collKey + "\\x00" + id

        l.mu.Lock()
        c := l.colls[collKey]
        if c == nil {
            c = new(collectionLock)
            l.colls[collKey] = c
        }
        c.refs++
        var d *documentLock
        if oneDocument {
            d = l.docs[docKey]
            if d == nil {
                d = new(documentLock)
                l.docs[docKey] = d
            }
            d.refs++
        }
        l.mu.Unlock()

        if !oneDocument {
            c.rw.Lock()
            return func() {
                c.rw.Unlock()
                l.release(collKey, c, docKey, nil)
            }
        }

        c.rw.RLock()
        d.mu.Lock()
        return func() {
            d.mu.Unlock()
            c.rw.RUnlock()
            l.release(collKey, c, docKey, d)
        }
    }

    func (l *writeLocks) release(collKey string, c *collectionLock, docKey string, d *documentLock) {
        l.mu.Lock()
        defer l.mu.Unlock()
        if d != nil {
            if d.refs--; d.refs == 0 {
                delete(l.docs, docKey)
            }
        }
        if c.refs--; c.refs == 0 {
            delete(l.colls, collKey)
        }
    }

    // taglineFilterID returns a key for the one document a filter can match (and an upsert can insert):
    // the filter has exactly one top-level _id, equal (plainly or by $eq) to a string or an ObjectId.
    // Other _id types are left to the collection lock: numbers of different types compare equal.
    func taglineFilterID(filter *types.Document) (string, bool) {
        if filter == nil {
            return "", false
        }
        ids := 0
        for _, k := range filter.Keys() {
            if k == "_id" {
                ids++
            }
        }
        if ids != 1 {
            return "", false
        }
        v, err := filter.Get("_id")
        if err != nil {
            return "", false
        }
        if d, ok := v.(*types.Document); ok {
            if d.Len() != 1 {
                return "", false
            }
            if v, err = d.Get("$eq"); err != nil {
                return "", false
            }
        }
        switch v := v.(type) {
        case string:
            return "s" + v, true
        case types.ObjectID:
            return "o" + string(v[:]), true
        default:
            return "", false
        }
    }
    """
)

FERRETDB_PATCHES: tuple[SourcePatch, ...] = (
    # Patch 4 (listed first: patch 1 edits the text it leaves). Bulk updates must not hold a cursor per
    # statement. `updateDocument` loops over the statements of one `update` command with
    # `defer closer.Close()` inside the loop, so every statement's query cursor, and with it a PostgreSQL
    # pool connection (pgxpool, 50 by default), stays open until the whole command ends: a bulk_write of 40
    # UpdateOne took 2.4 s, one of 100 hung for good once the pool was empty. Closing each statement's cursor
    # as soon as the statement is applied lets a bulk of 1,000 statements run on one connection at a time.
    SourcePatch(
        "internal/handler/msg_update.go",
        _go(
            """
                    closer := iterator.NewMultiCloser()
                    defer closer.Close()

                    closer.Add(res.Iter)

                    iter := common.FilterIterator(res.Iter, closer, u.Filter)

                    if !u.Multi {
                        iter = common.LimitIterator(iter, closer, 1)
                    }

                    result, err := common.UpdateDocument(ctx, c, "update", iter, &u)
            """
        ),
        _go(
            """
                    closer := iterator.NewMultiCloser()

                    closer.Add(res.Iter)

                    iter := common.FilterIterator(res.Iter, closer, u.Filter)

                    if !u.Multi {
                        iter = common.LimitIterator(iter, closer, 1)
                    }

                    result, err := common.UpdateDocument(ctx, c, "update", iter, &u)
                    closer.Close() // Tagline patch 4: not deferred to the end of the whole command
            """
        ),
    ),
    # Patch 1: update and findAndModify are atomic per document. Upstream they read the matching documents,
    # apply the operators in Go and write back by _id with no lock and no recheck, so concurrent statements
    # lose updates: 100 concurrent `$inc` by _id ended at 11-22, 60 concurrent `{remaining: {$gte: 5}}`
    # `$inc: -5` on 50 let 45-60 succeed (exact: 10), 20 concurrent claims of one pending document let 15-16
    # win (exact: 1), 20 concurrent `$inc` upserts of one _id ended at 1-2 (exact: 20). With the locks of
    # `_WRITE_LOCKS_GO` around each statement, from its query to its write, every one is exact.
    # A statement whose filter names one string or ObjectId _id locks that document only (under the read
    # side of its collection's lock); any other statement, and every multi-document one, locks the
    # collection. Measured (update_one by _id, 100,000 documents, a busy 2-core machine, runs interleaved):
    # 16 concurrent 580-1,230 ops/s with the document lock, 186-290 with a collection lock for every
    # statement; sequential 175-360 either way.
    # A single-document statement reads its match and closes its query (releasing the pool connection)
    # before it writes: upstream a statement holds its query's connection while it waits for a second one to
    # write, so 50 concurrent updates of different documents (the pool's size) took every connection and
    # waited for ever (unpatched, 100 concurrent `$inc` of one _id never answered, 40 ended at 5; 120
    # concurrent update_one by distinct _ids hung the server with the document lock before this; 400 take
    # 0.5 s after, and 400 find_one_and_update 0.6 s). The locks live in this
    # process: exact for the one FerretDB of a state dir, not across several FerretDBs on one PostgreSQL
    # (FerretDB 1.24 does not support that anyway: each caches its own copy of the schema metadata).
    # Not covered: `delete` by filter (it loses no update).
    SourcePatch("internal/handler/tagline_write_locks.go", None, _WRITE_LOCKS_GO),
    SourcePatch(
        "internal/handler/msg_update.go",
        _go(
            """
                    res, err := c.Query(ctx, &qp)
                    if err != nil {
                        return 0, 0, nil, lazyerrors.Error(err)
                    }
            """
        ),
        _go(
            """
                    // Tagline patch 1: from the query to the write (a multi statement: the collection).
                    lockFilter := u.Filter
                    if u.Multi {
                        lockFilter = nil
                    }
                    unlock := taglineWriteLocks.acquire(params.DB, params.Collection, lockFilter)

                    res, err := c.Query(ctx, &qp)
                    if err != nil {
                        unlock()
                        return 0, 0, nil, lazyerrors.Error(err)
                    }
            """
        ),
    ),
    SourcePatch(
        "internal/handler/msg_update.go",
        _go(
            """
                    if !u.Multi {
                        iter = common.LimitIterator(iter, closer, 1)
                    }
            """
        ),
        _go(
            """
                    if !u.Multi {
                        iter = common.LimitIterator(iter, closer, 1)

                        // Tagline patch 1: read the match, release the query's connection, then write.
                        docs, consumeErr := iterator.ConsumeValues(iter)
                        if consumeErr != nil {
                            closer.Close()
                            unlock()
                            return 0, 0, nil, lazyerrors.Error(consumeErr)
                        }
                        iter = iterator.Values(iterator.ForSlice(docs))
                        closer.Add(iter)
                    }
            """
        ),
    ),
    SourcePatch(
        "internal/handler/msg_update.go",
        _go(
            """
                    closer.Close() // Tagline patch 4: not deferred to the end of the whole command
            """
        ),
        _go(
            """
                    closer.Close() // Tagline patch 4: not deferred to the end of the whole command
                    unlock()
            """
        ),
    ),
    SourcePatch(
        "internal/handler/msg_findandmodify.go",
        _go(
            """
                // closer accumulates all things that should be closed / canceled.
                closer := iterator.NewMultiCloser(iterator.CloserFunc(cancel))
            """
        ),
        _go(
            """
                // Tagline patch 1: from the query to the write (released after closer.Close, deferred below).
                unlock := taglineWriteLocks.acquire(params.DB, params.Collection, params.Query)
                defer unlock()

                // closer accumulates all things that should be closed / canceled.
                closer := iterator.NewMultiCloser(iterator.CloserFunc(cancel))
            """
        ),
    ),
    SourcePatch(
        "internal/handler/msg_findandmodify.go",
        _go(
            """
                iter = common.LimitIterator(iter, closer, 1)
            """
        ),
        _go(
            """
                iter = common.LimitIterator(iter, closer, 1)

                // Tagline patch 1: read the match, release the query's connection, then write.
                docs, err := iterator.ConsumeValues(iter)
                if err != nil {
                    return nil, lazyerrors.Error(err)
                }
                iter = iterator.Values(iterator.ForSlice(docs))
                closer.Add(iter)
            """
        ),
    ),
    # Patch 2: `{_id: x}` is served by the unique _id index. The backend pushes equality down as
    # `_jsonb->'_id' @> $1`, but the _id index is a btree on `(_jsonb->'_id')`, and a btree cannot serve `@>`:
    # every lookup, update and delete by _id was a sequential scan (37-40 ms at 100,000 documents; update_one
    # by _id 25 ops/s). `=` selects the same documents (an _id is never an array, and an ObjectId or a date
    # is stored as exactly the object `@>` compared with) and is an index scan (1.5 ms end to end). Numbers
    # stay `@>` (1, 1.0 and 1 as int64 are one _id to MongoDB): integer _ids still scan.
    SourcePatch(
        "internal/backends/postgresql/query.go",
        _go(
            """
                // Select if value under the key is equal to provided value.
                sql := `%[1]s%[2]s%[3]s @> %[4]s`
            """
        ),
        _go(
            """
                // Tagline patch 2: _id equality as `=`, which the unique _id index (a btree) serves.
                if key, ok := k.(string); ok && key == "_id" && operator == "->" {
                    switch v.(type) {
                    case string, types.ObjectID, time.Time:
                        filter = metadata.IDColumn + " = " + p.Next()
                        args = append(args, string(must.NotFail(sjson.MarshalSingleValue(v))))
                        return
                    }
                }

                // Select if value under the key is equal to provided value.
                sql := `%[1]s%[2]s%[3]s @> %[4]s`
            """
        ),
    ),
    # Patch 3: non-unique indexes serve the equality filters that are pushed down. createIndexes makes btree
    # expression indexes `((_jsonb->'f'))`, but pushed-down equality is `_jsonb->'f' @> value` (so that
    # `{tags: "x"}` matches an array element), which a btree cannot serve: `{channel_id, follow_state}`
    # and `{tags: x}` were sequential scans (125 ms / 55 ms at 100,000 documents). GIN indexes (jsonb_ops)
    # serve `@>`, multikey and compound ANDs included (bitmap index scans: 90 ms / 9 ms). Unique indexes stay
    # btree (GIN cannot be unique); GIN has no order, so a descending key is indexed like an ascending one.
    SourcePatch(
        "internal/backends/postgresql/metadata/registry.go",
        _go(
            """
                    q += "INDEX %s ON %s (%s)"
            """
        ),
        _go(
            """
                    if index.Unique {
                        q += "INDEX %s ON %s (%s)"
                    } else {
                        q += "INDEX %s ON %s USING gin (%s)" // Tagline patch 3: GIN serves `@>`
                    }
            """
        ),
    ),
    SourcePatch(
        "internal/backends/postgresql/metadata/registry.go",
        _go(
            """
                        if key.Descending {
                            columns[i] += " DESC"
            """
        ),
        _go(
            """
                        if key.Descending && index.Unique { // Tagline patch 3: GIN has no DESC
                            columns[i] += " DESC"
            """
        ),
    ),
    # Patch 5: a duplicate key is not a server error. pgx's tracer logs every failed query at ERROR level
    # with its SQL and arguments (the whole document), and a unique-insert that meets an existing _id is
    # how the services take locks and detect replays: about 12,000 ERROR records per test suite run buried
    # the real errors. FerretDB answers those inserts with E11000 as MongoDB does; this logs them at DEBUG.
    # `--log-level` cannot do it: ERROR is the highest level it selects.
    SourcePatch(
        "internal/util/logging/pgx.go",
        _go(
            """
                "context"
                "log/slog"
            """
        ),
        _go(
            """
                "context"
                "errors"
                "log/slog"
            """
        ),
    ),
    SourcePatch(
        "internal/util/logging/pgx.go",
        _go(
            """
                "github.com/jackc/pgx/v5/tracelog"
            """
        ),
        _go(
            """
                "github.com/jackc/pgx/v5/pgconn"
                "github.com/jackc/pgx/v5/tracelog"
            """
        ),
    ),
    SourcePatch(
        "internal/util/logging/pgx.go",
        _go(
            """
                l, ok := pgxLogLevels[level]
            """
        ),
        _go(
            """
                // Tagline patch 5: unique violations (SQLSTATE 23505) are answered as E11000, not errors.
                if level == tracelog.LogLevelError {
                    var pgErr *pgconn.PgError
                    if err, _ := data["err"].(error); errors.As(err, &pgErr) && pgErr.Code == "23505" {
                        level = tracelog.LogLevelDebug
                    }
                }

                l, ok := pgxLogLevels[level]
            """
        ),
    ),
)


def patch_ferretdb(source: Path) -> None:
    """Apply :data:`FERRETDB_PATCHES`; fails loudly if the upstream text is not there (a version bump)."""
    for patch in FERRETDB_PATCHES:
        path = source / patch.path
        if patch.old is None:
            if path.exists():
                raise RuntimeError(f"ferretdb: cannot add {patch.path}: it exists upstream")
            path.write_text(patch.new)
            continue
        text = path.read_text()
        if text.count(patch.old) != 1:
            raise RuntimeError(f"ferretdb: cannot patch {patch.path}: {patch.old!r} not found exactly once")
        path.write_text(text.replace(patch.old, patch.new))


def build_ferretdb(go: str, cache_dir: Path, tmp: Path) -> None:
    """Download the FerretDB module, add the version file its zip lacks, patch it and build it into ``tmp``.

    Every driver it links is pure Go (pgx for PostgreSQL), so cgo is off and no C compiler is needed.
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
# The servers
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    """What the generic up/down/status code needs to know about one server."""

    key: str  # the --only and restart value
    label: str  # used in messages and file names
    cmdline_marker: str  # part of the server's command line, to recognise it behind a pid
    port_name: str  # the port clients use (a key of PREFERRED_PORTS)
    extra_port_names: tuple[str, ...]
    env_key: str | None  # its line in infra.env (None: the services do not talk to it)
    env_url: Callable[[int], str]
    data_dirs: tuple[str, ...]  # relative to the state dir; kept by down and restart, deleted by reset
    log_files: tuple[str, ...]  # relative to the logs dir; shown when the start fails
    start_timeout_s: float
    prepare: Callable[[Layout], None]  # make sure the tools and cached artifacts exist
    start: Callable[[Layout, Mapping[str, int]], subprocess.Popen[bytes]]
    probe: Callable[[int], str | None]
    needs: tuple[str, ...] = ()  # keys of the servers that must answer before this one starts
    after_ready: Callable[[Layout, Mapping[str, int]], None] | None = None  # once it answers, every start
    stop_signal: signal.Signals = signal.SIGTERM
    stop_leader_only: bool = False  # send stop_signal to the leader only (it stops its own children)

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


POSTGRES_DEBIAN_ROOT = Path("/usr/lib/postgresql")
POSTGRES_DATA_DIR = "postgres-data"
POSTGRES_RUN_DIR = "postgres-run"  # its unix socket and lock file (not /var/run/postgresql)
POSTGRES_INSTALL_HINT = (
    "install Debian's PostgreSQL server: `apt-get install -y postgresql` (with sudo when not root); "
    "any PostgreSQL 13 or newer whose bin dir holds postgres and initdb will do"
)


def postgres_os_user() -> str | None:
    """Who PostgreSQL runs as: POSTGRES_OS_USER when this script runs as root, else this script's user."""
    return POSTGRES_OS_USER if os.geteuid() == 0 else None


def _pg_version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_postgres_bindir(data_dir: Path | None = None) -> Path:
    """The bin dir of the PostgreSQL server: the version ``data_dir`` was made with if it is installed,
    else ``pg_config --bindir``, else the newest ``/usr/lib/postgresql/*/bin`` (Debian's layout), else PATH.
    """
    candidates: list[Path] = []
    with contextlib.suppress(OSError):
        if data_dir is not None:
            candidates.append(POSTGRES_DEBIAN_ROOT / (data_dir / "PG_VERSION").read_text().strip() / "bin")
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if bindir.returncode == 0 and bindir.stdout.strip():
            candidates.append(Path(bindir.stdout.strip()))
    installed = [path for path in POSTGRES_DEBIAN_ROOT.glob("*/bin") if _pg_version_key(path.parent.name)]
    candidates += sorted(installed, key=lambda path: _pg_version_key(path.parent.name), reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir_path in candidates:
        if all((bindir_path / tool).is_file() for tool in ("postgres", "initdb", "psql")):
            return bindir_path
    raise InfraError(
        "PostgreSQL's server is not installed (no postgres, initdb and psql in `pg_config --bindir`, "
        f"{POSTGRES_DEBIAN_ROOT}/*/bin or PATH): {POSTGRES_INSTALL_HINT}"
    )


def prepare_postgres(layout: Layout) -> None:
    find_postgres_bindir(layout.state_dir / POSTGRES_DATA_DIR)
    if (user := postgres_os_user()) is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise InfraError(
                f"running as root, PostgreSQL needs a `{user}` account to run as (initdb and postgres refuse "
                f"root): {POSTGRES_INSTALL_HINT} (the package creates it)"
            ) from None
        check_reachable(layout.state_dir, user)


def check_reachable(directory: Path, user: str) -> None:
    """Raise InfraError unless ``user`` can enter ``directory`` and every directory above it."""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for path in (directory, *directory.parents):
        try:
            info = path.stat()
        except FileNotFoundError:
            continue  # made later, by this script, searchable
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise InfraError(
                f"PostgreSQL runs as the `{user}` account here (initdb and postgres refuse root), and it "
                f"cannot enter {path} (mode {stat.S_IMODE(info.st_mode):04o}): choose a --state-dir it can "
                f"reach, or `chmod o+x {path}`"
            )


def init_postgres(layout: Layout, bindir: Path, data_dir: Path, user: str | None) -> None:
    """initdb into a temporary dir beside ``data_dir``, renamed into place when complete."""
    tmp = data_dir.with_name(f".{data_dir.name}.init")
    shutil.rmtree(tmp, ignore_errors=True)  # an interrupted initdb
    tmp.mkdir(mode=0o700, parents=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
    log_file = layout.logs_dir / "postgres-initdb.log"
    log_file.unlink(missing_ok=True)
    say(f"postgres: initdb {data_dir} ({bindir})…")
    command = [
        str(bindir / "initdb"),
        f"--pgdata={tmp}",
        f"--username={POSTGRES_SUPERUSER}",
        # Trust, on a server that listens on 127.0.0.1 only (and a socket in the state dir): any local
        # account can connect as any role. A local development server, never a shared or remote one.
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C",  # FerretDB accepts C, POSIX, C.UTF8 or en_US.UTF8
        "--no-instructions",
    ]
    run_logged(command, cwd=layout.state_dir, log_file=log_file, what="postgres: initdb", user=user)
    tmp.rename(data_dir)


def start_postgres(layout: Layout, ports: Mapping[str, int]) -> subprocess.Popen[bytes]:
    data_dir = layout.state_dir / POSTGRES_DATA_DIR
    bindir = find_postgres_bindir(data_dir)
    user = postgres_os_user()
    if not (data_dir / "PG_VERSION").is_file():
        init_postgres(layout, bindir, data_dir, user)
    run_dir = layout.state_dir / POSTGRES_RUN_DIR
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(run_dir, entry.pw_uid, entry.pw_gid)
    socket_dir = postgres_socket_dir(run_dir, ports["postgres"])
    command = postgres_command(bindir, data_dir=data_dir, port=ports["postgres"], socket_dir=socket_dir)
    return spawn_detached(command, layout.logs_dir / "postgres.log", cwd=layout.state_dir, user=user)


def create_ferretdb_database(layout: Layout, ports: Mapping[str, int]) -> None:
    """FerretDB's role and database (idempotent): it keeps each MongoDB database as a schema in it."""
    psql = find_postgres_bindir(layout.state_dir / POSTGRES_DATA_DIR) / "psql"
    command = [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", LOOPBACK, "-p", str(ports["postgres"])]
    command += ["-U", POSTGRES_SUPERUSER, "-d", "postgres", "-f", "-"]
    run_logged(
        command,
        cwd=layout.state_dir,
        log_file=layout.logs_dir / "postgres-setup.log",
        what="postgres: creating FerretDB's role and database",
        stdin_text=FERRETDB_PG_SETUP_SQL,
    )


LEGACY_FERRETDB_DATA_DIR = "ferretdb-data"
"""Where FerretDB kept its own data before it stored it in PostgreSQL: not read, deleted by ``reset``."""


def start_ferretdb(layout: Layout, ports: Mapping[str, int]) -> subprocess.Popen[bytes]:
    process_state_dir = layout.state_dir / "ferretdb-state"
    process_state_dir.mkdir(parents=True, exist_ok=True)
    if (legacy := layout.state_dir / LEGACY_FERRETDB_DATA_DIR).exists():
        say(
            f"ferretdb: {legacy} is data of FerretDB's former backend, not used any more (`reset` deletes it)"
        )
    command = ferretdb_command(
        layout.ferretdb_binary,
        port=ports["ferretdb"],
        postgres_port=ports["postgres"],
        process_state_dir=process_state_dir,
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
POSTGRES = Server(
    key="postgres",
    label="postgres",
    cmdline_marker=f"{os.sep}postgres -D ",
    port_name="postgres",
    extra_port_names=(),
    env_key=None,
    env_url=lambda port: f"postgres://{POSTGRES_SUPERUSER}@{LOOPBACK}:{port}/{FERRETDB_PG_DATABASE}",
    data_dirs=(POSTGRES_DATA_DIR, POSTGRES_RUN_DIR),
    log_files=("postgres.log",),
    start_timeout_s=POSTGRES_START_TIMEOUT_S,
    prepare=prepare_postgres,
    start=start_postgres,
    probe=probe_postgres,
    after_ready=create_ferretdb_database,
    # Fast shutdown (roll back open transactions, checkpoint, exit). SIGTERM is a smart shutdown, which waits
    # for every client to leave; a signal to the whole group would reach the backends too.
    stop_signal=signal.SIGINT,
    stop_leader_only=True,
)
FERRETDB = Server(
    key="mongo",
    label="ferretdb",
    cmdline_marker="--handler=postgresql",
    port_name="ferretdb",
    extra_port_names=(),
    env_key="MONGODB_URL",
    env_url=lambda port: f"mongodb://{LOOPBACK}:{port}/",
    data_dirs=("ferretdb-state", LEGACY_FERRETDB_DATA_DIR),
    log_files=("ferretdb.log",),
    start_timeout_s=FERRETDB_START_TIMEOUT_S,
    prepare=ensure_ferretdb_binary,
    start=start_ferretdb,
    probe=probe_ferretdb,
    needs=("postgres",),
)
SERVERS = (KAFKA, POSTGRES, FERRETDB)
"""In start order; stopped in the reverse order."""


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
        stop_server(server, pid)
        server.pid_file(layout).unlink(missing_ok=True)
    else:
        problem += f"; it was already running: try `{sys.argv[0]} down --state-dir {layout.state_dir}`"
    raise InfraError(f"{server.label} (pid {pid}, port {port}) {problem}\n{logs}")


def write_env_file(layout: Layout, ports: Mapping[str, int]) -> str:
    """Write the env lines of the servers running from this state dir; return the text."""
    values = {
        server.env_key: server.env_url(ports[server.port_name])
        for server in SERVERS
        if server.env_key is not None and server.running_pid(layout) is not None
    }
    text = render_env(values)
    write_atomically(layout.env_file, text)
    return text


def server_named(key: str) -> Server:
    return next(server for server in SERVERS if server.key == key)


def with_needs(servers: Sequence[Server]) -> list[Server]:
    """``servers`` and every server they need, in start order."""
    keys = {server.key for server in servers}
    for server in reversed(SERVERS):  # a server's needs come before it
        if server.key in keys:
            keys.update(server.needs)
    return [server for server in SERVERS if server.key in keys]


def cmd_up(layout: Layout, only: str | None) -> int:
    wanted = with_needs([server for server in SERVERS if only in (None, server.key)])
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(layout.state_dir / ".lock"):
        pids: dict[str, int] = {}
        children: dict[str, subprocess.Popen[bytes]] = {}
        ready: set[str] = set()

        def wait(server: Server) -> None:
            if server.key not in ready:
                ports = load_ports(layout)
                child = children.get(server.key)
                wait_until_ready(layout, server, pids[server.key], ports[server.port_name], child)
                if server.after_ready is not None:
                    server.after_ready(layout, ports)
                ready.add(server.key)

        # Start what is missing in order: Kafka and PostgreSQL boot while FerretDB builds, FerretDB starts
        # once PostgreSQL answers.
        for server in wanted:
            pid = server.running_pid(layout)
            if pid is not None:
                say(f"{server.label}: already running (pid {pid})")
                pids[server.key] = pid
                continue
            server.prepare(layout)
            for key in server.needs:
                wait(server_named(key))
            ports = assign_ports(layout, (server.port_name, *server.extra_port_names))
            children[server.key] = start_server(layout, server, ports)
            pids[server.key] = children[server.key].pid
        for server in wanted:
            wait(server)
        text = write_env_file(layout, load_ports(layout))
    say(f"wrote {layout.env_file}:")
    print(text, end="", flush=True)
    return 0


def stop_server(server: Server, pid: int) -> None:
    stop_process_group(pid, server.label, server.stop_signal, leader_only=server.stop_leader_only)


def stop_servers(layout: Layout, *, wipe: bool) -> None:
    """Stop every server of the state dir; with ``wipe`` also delete their data and the env file."""
    with file_lock(layout.state_dir / ".lock"):
        for server in reversed(SERVERS):  # FerretDB before the PostgreSQL it uses
            pid = server.running_pid(layout)
            if pid is None:
                say(f"{server.label}: not running")
            else:
                stop_server(server, pid)
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
        url = f" ({server.env_url(port)})" if server.env_key is None else ""
        say(f"{server.label}: running (pid {pid}) at {LOOPBACK}:{port}{url}, {state}")
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
    server = server_named(key)
    with file_lock(layout.state_dir / ".lock"):
        pid = server.running_pid(layout)
        if pid is None:
            raise InfraError(f"{server.label} is not running from {layout.state_dir}: nothing to restart")
        if kill:
            if not kill_process_family(pid):
                raise InfraError(f"{server.label}: pid {pid} or one of its children survived SIGKILL")
            say(f"{server.label}: killed (pid {pid})")
        else:
            stop_server(server, pid)
        server.pid_file(layout).unlink(missing_ok=True)
        time.sleep(down_s)
        ports = load_ports(layout)
        say(f"{server.label}: starting again on {LOOPBACK}:{ports[server.port_name]} with its data…")
        child = server.start(layout, ports)
        write_atomically(server.pid_file(layout), f"{child.pid}\n")
        wait_until_ready(layout, server, child.pid, ports[server.port_name], child)
        if server.after_ready is not None:
            server.after_ready(layout, ports)
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
        description="Start/stop the local Kafka, PostgreSQL and FerretDB servers without Docker (see the "
        "docstring)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", parents=[common], help="start the servers and wait until they answer")
    up.add_argument(
        "--only",
        choices=[server.key for server in SERVERS],
        help="start only this server and those it needs (mongo: FerretDB and its PostgreSQL)",
    )
    commands.add_parser("down", parents=[common], help="stop the servers; their data is kept for the next up")
    commands.add_parser("reset", parents=[common], help="stop the servers and delete their data")
    commands.add_parser("status", parents=[common], help="exit 0 if every started server answers")
    commands.add_parser("env", parents=[common], help="print the env file")
    restart = commands.add_parser(
        "restart", parents=[common], help="stop one server and start it again, keeping its data"
    )
    restart.add_argument("server", choices=[server.key for server in SERVERS])
    restart.add_argument(
        "--kill", action="store_true", help="SIGKILL its process group (a crash) instead of stopping it"
    )
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

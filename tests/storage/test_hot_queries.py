"""Every query shape a store runs on a hot path is answered from an index, on whatever server this runs on.

:data:`STORES` is the one list of the services' stores. Each store module declares its hot queries in
``HOT_QUERIES`` (:class:`tagline_platform.mongo.HotQuery`); for each one the test creates the store's indexes
in a fresh database, inserts documents shaped by the declared filter, runs ``explain`` of a ``find`` with that
filter and fails on a full scan:

- FerretDB (``buildInfo`` has ``ferretdbVersion``): ``filterPushdown`` must be true (otherwise FerretDB reads
  every document and filters in Go), and the backend's own plan, which FerretDB includes, must not scan the
  table (PostgreSQL: no ``Seq Scan`` node; SQLite: no ``SCAN`` step);
- MongoDB: the winning plan must use an index (``IXSCAN``, ``IDHACK`` or an ``EXPRESS`` stage) and contain no
  ``COLLSCAN``.

PostgreSQL chooses by cost, and on a table of a few rows a sequential scan is rightly cheapest. So each
explained collection gets :data:`SAMPLE` documents of about 1 KB (:func:`sample_documents`), about 55 pages,
and on FerretDB a ``collStats`` first, which makes it ``ANALYZE`` the table (PostgreSQL and SQLite alike): the
plan is then made with statistics, as on a real collection that autovacuum has analysed, instead of
depending on whether autovacuum happened to run. Measured on PostgreSQL 15 with the indexes the patched
FerretDB creates (the btree on ``_id`` compared with ``=``, GIN on the other fields): from about 50 such
documents an ``_id`` equality is an Index Scan, and from about 200 a GIN-served equality (one field or two)
is a Bitmap Index Scan, analysed or not; a condition no index serves stays a ``Seq Scan``. The real
collections are far larger, which only favours the index more.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from bson import ObjectId
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from tagline_liveshop.adapters.store import LiveshopStore
from tagline_platform.mongo import HotQuery
from tagline_sender.adapters.journeys import JourneyStore
from tagline_sender.adapters.mongo import SenderStore
from tagline_tagger.adapters.mongo import TaggerStore

pytestmark = pytest.mark.integration

Doc = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Store:
    """One store of a service, as this suite builds it."""

    name: str
    module: str
    """The module that holds the store's ``HOT_QUERIES``."""
    build: Callable[[AsyncDatabase[Doc]], object]
    """The store on a database (its constructor)."""
    reads_from: tuple[Callable[[AsyncDatabase[Doc]], object], ...] = ()
    """Other stores whose collections (and so indexes) this one reads."""

    async def create_indexes(self, db: AsyncDatabase[Doc]) -> None:
        """Every index the store (and the stores it reads from) creates at start-up."""
        for build in (*self.reads_from, self.build):
            ensure = getattr(build(db), "ensure_indexes", None)
            if ensure is not None:
                await ensure()


STORES: tuple[Store, ...] = (
    Store("sender", "tagline_sender.adapters.mongo", SenderStore),
    # journeys read the sender's member projection (``members``), whose indexes the sender store creates
    Store("journeys", "tagline_sender.adapters.journeys", JourneyStore, reads_from=(SenderStore,)),
    Store("tagger", "tagline_tagger.adapters.mongo", TaggerStore),
    Store("liveshop", "tagline_liveshop.adapters.store", LiveshopStore),
)
"""Every store of the services. A new store module (one that creates indexes or declares ``HOT_QUERIES``)
must be added here: :func:`test_every_store_module_is_registered` finds the ones that are not."""


def hot_queries(store: Store) -> tuple[HotQuery, ...] | None:
    """The store's declared ``HOT_QUERIES``, ``None`` when its module has none."""
    declared = getattr(importlib.import_module(store.module), "HOT_QUERIES", None)
    return None if declared is None else tuple(declared)


def missing_declaration(store: Store) -> str:
    return (
        f"{store.module} declares no HOT_QUERIES: add `HOT_QUERIES: tuple[HotQuery, ...]` "
        "(tagline_platform.mongo.HotQuery) next to the code that runs them, one entry per query shape the "
        f"{store.name} store runs on a hot path (per event, per delivery, per API call on one record)"
    )


def collections_of(store: object) -> set[str]:
    """The collections a store holds as attributes (also through one level of helpers, e.g. its lock)."""
    names: set[str] = set()
    for value in vars(store).values():
        if isinstance(value, AsyncCollection):
            names.add(value.name)
        elif hasattr(value, "__dict__") and not isinstance(value, AsyncDatabase):
            names.update(inner.name for inner in vars(value).values() if isinstance(inner, AsyncCollection))
    return names


# ---- documents shaped by a filter ---------------------------------------------------------------------

SAMPLE = 300
"""Documents inserted for each explained query (see the module's docstring)."""

PADDING = "x" * 1_000
"""What makes a sample document about 1 KB: a member's attributes, a session's state and the like."""


def example_value(condition: Any) -> Any:
    """A value the field holds in a document the condition is about (``{"$lt": 5}`` → 5)."""
    if isinstance(condition, Mapping) and condition and all(str(key).startswith("$") for key in condition):
        for operator in ("$eq", "$gte", "$lte", "$gt", "$lt", "$ne", "$in", "$all", "$nin"):
            if operator in condition:
                operand = condition[operator]
                if operator in {"$in", "$all", "$nin"}:
                    return operand[0] if operand else None
                return operand
        return None
    return condition


def variant(value: Any, i: int) -> Any:
    """The ``i``-th distinct value of the example's type (0: the example itself)."""
    if i == 0:
        return value
    varied: Any
    match value:
        case bool():
            varied = value if i % 2 == 0 else not value
        case int() | float():
            varied = value + i
        case str():
            varied = f"{value}~{i}"
        case datetime():
            varied = value + timedelta(minutes=i)
        case ObjectId():
            varied = ObjectId()
        case list():
            varied = [variant(item, i) for item in value]
        case _:
            varied = value
    return varied


def sample_documents(filter_: Mapping[str, Any], n: int = SAMPLE) -> list[Doc]:
    """``n`` documents with every field the filter names: the first holds the filter's example values, each
    other one a different value of the same type in every field (so the filter is selective, as on a hot
    path). Dotted keys become nested documents."""
    fields = {key: example_value(value) for key, value in filter_.items() if not key.startswith("$")}
    docs: list[Doc] = []
    for i in range(n):
        doc: Doc = {}
        for key, value in fields.items():
            *parents, leaf = key.split(".")
            target = doc
            for part in parents:
                target = target.setdefault(part, {})
            target[leaf] = variant(value, i)
        doc["padding"] = PADDING
        docs.append(doc)
    if len({repr(doc.get("_id", i)) for i, doc in enumerate(docs)}) < n:  # _id absent or not variable
        for i, doc in enumerate(docs):
            if i > 0 or "_id" not in doc:
                doc["_id"] = f"sample-{i:04d}"
    return docs


# ---- the verdict --------------------------------------------------------------------------------------

INDEX_STAGES = {"IXSCAN", "IDHACK"}  # and every EXPRESS_* stage (MongoDB 8's fast path by _id or an index)


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of a nested explain document (an array's items under the key ``[]``)."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield str(key), inner
            yield from walk(inner)
    elif isinstance(value, list):
        for inner in value:
            yield "[]", inner
            yield from walk(inner)


def full_scan_reasons(explained: Mapping[str, Any], *, ferretdb: bool) -> list[str]:
    """Why the explained ``find`` reads the whole collection; empty when an index answers it."""
    reasons: list[str] = []
    if ferretdb:
        if explained.get("filterPushdown") is not True:
            reasons.append(
                "FerretDB does not push this filter down (filterPushdown: false): it reads every document"
                " of the collection and filters them in Go"
            )
        planner = explained.get("queryPlanner", {})
        seq_scans = [
            f"Seq Scan on {inner.get('Relation Name', '?')}"
            for _, inner in walk(planner)
            if isinstance(inner, Mapping) and inner.get("Node Type") == "Seq Scan"
        ]
        if seq_scans:
            reasons.append(f"PostgreSQL plans a sequential scan ({', '.join(seq_scans)}): no index serves it")
        sqlite_scans = [
            step
            for key, steps in walk(planner)
            if key == "Plan" and isinstance(steps, list)
            for step in steps
            if isinstance(step, str) and re.search(r"detail=SCAN ", step)
        ]
        if sqlite_scans:
            reasons.append(f"SQLite scans the whole table ({'; '.join(sqlite_scans)})")
        return reasons
    winning = explained.get("queryPlanner", {}).get("winningPlan", {})
    stages = [str(stage) for key, stage in walk(winning) if key == "stage"]
    if "COLLSCAN" in stages:
        reasons.append(f"MongoDB's winning plan scans the collection (stages: {' <- '.join(stages)})")
    elif not any(stage in INDEX_STAGES or stage.startswith("EXPRESS") for stage in stages):
        reasons.append(f"MongoDB's winning plan uses no index (stages: {' <- '.join(stages)})")
    return reasons


async def explain_find(db: AsyncDatabase[Doc], query: HotQuery) -> Doc:
    explained: Doc = await db.command(
        "explain", {"find": query.collection, "filter": dict(query.filter)}, verbosity="queryPlanner"
    )
    return explained


async def check(db: AsyncDatabase[Doc], store: Store, query: HotQuery, *, ferretdb: bool) -> list[str]:
    """Indexes of the store, sample documents, ``explain``: why the query is a full scan (empty if not)."""
    await store.create_indexes(db)
    await db[query.collection].insert_many(sample_documents(query.filter))
    if ferretdb:  # FerretDB's collStats runs ANALYZE on the collection's table (see the module docstring)
        await db.command("collStats", query.collection)
    explained = await explain_find(db, query)
    reasons = full_scan_reasons(explained, ferretdb=ferretdb)
    if reasons:
        reasons.append(f"explain: {explained.get('queryPlanner')}")
    return reasons


# ---- the tests ----------------------------------------------------------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^\w]+", "-", text).strip("-")


def declared_cases() -> Iterator[Any]:
    for store in STORES:
        queries = hot_queries(store)
        if not queries:
            yield pytest.param(store, None, id=f"{store.name}/no-HOT_QUERIES")
            continue
        for query in queries:
            yield pytest.param(store, query, id=f"{store.name}/{query.collection}/{slug(query.purpose)}")


@pytest.mark.parametrize(("store", "query"), list(declared_cases()))
async def test_a_hot_query_is_answered_from_an_index(
    mongo_db: AsyncDatabase[Doc], is_ferretdb: bool, store: Store, query: HotQuery | None
) -> None:
    if query is None:
        pytest.fail(missing_declaration(store), pytrace=False)
    reasons = await check(mongo_db, store, query, ferretdb=is_ferretdb)
    if reasons:
        pytest.fail(
            f"{store.module} HOT_QUERIES: {query.collection} {dict(query.filter)} ({query.purpose}) is a"
            " full scan:\n- " + "\n- ".join(reasons),
            pytrace=False,
        )


@pytest.mark.parametrize("store", STORES, ids=[store.name for store in STORES])
async def test_a_store_declares_its_hot_queries_on_its_own_collections(
    mongo_db: AsyncDatabase[Doc], store: Store
) -> None:
    queries = hot_queries(store)
    assert queries, missing_declaration(store)
    assert all(isinstance(query, HotQuery) for query in queries), f"{store.module}: HOT_QUERIES of HotQuery"
    used = collections_of(store.build(mongo_db))
    unknown = sorted({query.collection for query in queries} - used)
    assert not unknown, f"{store.module} HOT_QUERIES names collections its store does not use: {unknown}"


def test_every_store_module_is_registered() -> None:
    """A module that creates indexes or declares hot queries is a store: it belongs in :data:`STORES`."""
    found = set()
    for path in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/*/src/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        if re.search(r"^HOT_QUERIES\b|async def ensure_indexes\(", text, re.MULTILINE):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.add(".".join(parts[parts.index("src") + 1 :]))
    assert found - {store.module for store in STORES} == set(), "store modules missing from STORES"


# ---- the checker checks itself ------------------------------------------------------------------------


def fake_store_module() -> ModuleType:
    """``fake_store.py`` beside this file, importable by name like a service's store module."""
    name = "tagline_storage_fake_store"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_store.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


async def test_the_checker_passes_an_indexed_query_and_flags_an_in_query(
    mongo_db: AsyncDatabase[Doc], is_ferretdb: bool
) -> None:
    module = fake_store_module()
    fake = Store("fake", module.__name__, module.FakeStore)
    assert hot_queries(fake) == (module.SERVED, module.FLAGGED)
    assert await check(mongo_db, fake, module.SERVED, ferretdb=is_ferretdb) == []
    await mongo_db.drop_collection("items")
    reasons = await check(mongo_db, fake, module.FLAGGED, ferretdb=is_ferretdb)
    expected = "FerretDB does not push this filter down" if is_ferretdb else "MongoDB's winning plan scans"
    assert reasons and reasons[0].startswith(expected), reasons


def test_the_verdict_reads_each_servers_plan() -> None:
    """:func:`full_scan_reasons` on the plans each server returns (shapes as FerretDB 1.24 and MongoDB 7-8
    answer ``explain``)."""
    pg_seq = {"Plan": {"Node Type": "Seq Scan", "Relation Name": "members_1"}}
    pg_bitmap = {
        "Plan": {
            "Node Type": "Bitmap Heap Scan",
            "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "members_1_tags"}],
        }
    }
    pg_nested_seq = {"Plan": {"Node Type": "Limit", "Plans": [{"Node Type": "Seq Scan"}]}}
    sqlite_search = {"Plan": ["id=3 parent=0 notused=0 detail=SEARCH m USING INDEX m__id_ (<expr>=?)"]}
    sqlite_scan = {"Plan": ["id=2 parent=0 notused=0 detail=SCAN m"]}

    def ferret(pushdown: bool, planner: Doc) -> list[str]:
        return full_scan_reasons({"filterPushdown": pushdown, "queryPlanner": planner}, ferretdb=True)

    assert ferret(True, pg_bitmap) == []
    assert ferret(True, sqlite_search) == []
    assert len(ferret(True, pg_seq)) == 1
    assert len(ferret(True, pg_nested_seq)) == 1
    assert len(ferret(False, pg_seq)) == 2
    assert len(ferret(False, sqlite_scan)) == 2

    def mongo(winning: Doc) -> list[str]:
        return full_scan_reasons({"queryPlanner": {"winningPlan": winning}}, ferretdb=False)

    assert mongo({"stage": "FETCH", "inputStage": {"stage": "IXSCAN"}}) == []
    assert mongo({"stage": "IDHACK"}) == []
    assert mongo({"stage": "EXPRESS_IXSCAN"}) == []
    assert mongo({"queryPlan": {"stage": "FETCH", "inputStage": {"stage": "IXSCAN"}}}) == []
    assert len(mongo({"stage": "COLLSCAN"})) == 1
    assert len(mongo({"stage": "SORT", "inputStage": {"stage": "COLLSCAN"}})) == 1
    assert len(mongo({"stage": "EOF"})) == 1

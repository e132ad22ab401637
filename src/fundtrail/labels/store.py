"""The label store: the ``labels`` and ``label_sources`` tables (schema migration 3).

A label row names one address on one chain (``key``: the address key the rest of the store joins on;
NULL for chains fundtrail does not ingest), its label, a category of the taxonomy, a confidence 0-100
(NULL: unknown), optional first/last seen times, whether it defines a whole cluster, a JSON context
and its source. ``label_id`` is a dense integer assigned here, the single writer.

Imports go through :func:`replace_sources`: every label of the sources being imported is deleted and the
new rows inserted in one transaction (an Arrow table and one ``INSERT ... SELECT``), so a re-import
replaces, never duplicates, and an error leaves the store as it was. Manual labels (``add``) have the
source ``manual`` unless told otherwise; they are edited and deleted one by one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from fundtrail.errors import InvalidInput, NotFound
from fundtrail.labels.addresses import resolve_on
from fundtrail.labels.taxonomy import check_category, check_confidence
from fundtrail.store.db import scalar, transaction

MANUAL_SOURCE = "manual"
RESERVED_PREFIXES = ("tagpack:", "ofac-xml:", "ofac-list:")

_COLUMNS = (
    "label_id, source, chain, address, key, label, category, confidence, first_seen, last_seen, "
    "is_cluster_definer, context, created_at, updated_at"
)
_FIELDS = (
    "label_id",
    "label",
    "category",
    "source",
    "confidence",
    "first_seen",
    "last_seen",
    "is_cluster_definer",
    "context",
    "address",
    "chain",
)
# times leave DuckDB as epoch microseconds (a TIMESTAMPTZ fetched as a Python object needs pytz)
_TIMES = ("first_seen", "last_seen")
_SELECT = f"SELECT {', '.join(f'epoch_us({c})' if c in _TIMES else c for c in _FIELDS)} FROM labels"
_L_FIELDS = ", ".join(f"epoch_us(l.{c})" if c in _TIMES else f"l.{c}" for c in _FIELDS)
_TS = pa.timestamp("us", tz="UTC")


_CONTEXT_CACHE: dict[tuple[tuple[str, Any], ...], str] = {}


def _context_json(context: dict[str, Any] | None) -> str | None:
    """The JSON text of a context; contexts repeat across the tags of a pack, so flat ones are cached."""
    if not context:
        return None
    try:
        ck = tuple(sorted(context.items()))
        hit = _CONTEXT_CACHE.get(ck)
    except TypeError:  # unhashable values (lists, dicts)
        return json.dumps(context, sort_keys=True, default=str)
    if hit is None:
        if len(_CONTEXT_CACHE) > 100_000:
            _CONTEXT_CACHE.clear()
        hit = _CONTEXT_CACHE[ck] = json.dumps(context, sort_keys=True, default=str)
    return hit


@dataclass
class LabelRows:
    """Labels to write, as columns (built by the importers, written in one bulk insert)."""

    source: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)
    address: list[str] = field(default_factory=list)
    key: list[bytes | None] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    confidence: list[int | None] = field(default_factory=list)
    first_seen: list[dt.datetime | None] = field(default_factory=list)
    last_seen: list[dt.datetime | None] = field(default_factory=list)
    is_cluster_definer: list[bool] = field(default_factory=list)
    context: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.source)

    def append(
        self,
        source: str,
        chain: str,
        address: str,
        key: bytes | None,
        label: str,
        category: str,
        confidence: int | None,
        first_seen: dt.datetime | None,
        last_seen: dt.datetime | None,
        is_cluster_definer: bool,
        context: dict[str, Any] | None,
    ) -> None:
        self.source.append(source)
        self.chain.append(chain)
        self.address.append(address)
        self.key.append(key)
        self.label.append(label)
        self.category.append(category)
        self.confidence.append(confidence)
        self.first_seen.append(first_seen)
        self.last_seen.append(last_seen)
        self.is_cluster_definer.append(is_cluster_definer)
        self.context.append(_context_json(context))

    def extend(self, other: LabelRows) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))

    def table(self, first_id: int, now: dt.datetime) -> pa.Table:
        n = len(self)
        return pa.table(
            {
                "label_id": pa.array(range(first_id, first_id + n), pa.int64()),
                "source": pa.array(self.source, pa.string()),
                "chain": pa.array(self.chain, pa.string()),
                "address": pa.array(self.address, pa.string()),
                "key": pa.array(self.key, pa.binary()),
                "label": pa.array(self.label, pa.string()),
                "category": pa.array(self.category, pa.string()),
                "confidence": pa.array(self.confidence, pa.int32()),
                "first_seen": pa.array(self.first_seen, _TS),
                "last_seen": pa.array(self.last_seen, _TS),
                "is_cluster_definer": pa.array(self.is_cluster_definer, pa.bool_()),
                "context": pa.array(self.context, pa.string()),
                "created_at": pa.array([now] * n, _TS),
                "updated_at": pa.array([now] * n, _TS),
            }
        )


@dataclass
class SourceImport:
    """One source of an import: its name, the importer, where it came from and its rows."""

    source: str
    importer: str
    path: str | None
    rows: LabelRows


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def _registered(con: duckdb.DuckDBPyConnection, table: pa.Table) -> Iterator[str]:
    name = f"_labels_{uuid.uuid4().hex}"
    con.register(name, table)
    try:
        yield name
    finally:
        con.unregister(name)


def replace_sources(con: duckdb.DuckDBPyConnection, imports: Sequence[SourceImport]) -> None:
    """Replace every label of the given sources by their new rows, and their ``label_sources`` rows, in
    one transaction: all or nothing."""
    rows = LabelRows()
    for imp in imports:
        rows.extend(imp.rows)
    names = [imp.source for imp in imports]
    now = _now()
    with transaction(con):
        con.execute("DELETE FROM labels WHERE source IN (SELECT unnest(?::VARCHAR[]))", [names])
        con.execute("DELETE FROM label_sources WHERE source IN (SELECT unnest(?::VARCHAR[]))", [names])
        first_id = int(scalar(con, "SELECT coalesce(max(label_id), 0) + 1 FROM labels"))
        with _registered(con, rows.table(first_id, now)) as view:
            con.execute(f"INSERT INTO labels ({_COLUMNS}) SELECT {_COLUMNS} FROM {view}")
        for imp in imports:
            con.execute(
                "INSERT INTO label_sources VALUES (?, ?, ?, ?, ?)",
                [imp.source, imp.importer, imp.path, now, len(imp.rows)],
            )


def _iso(us: int | None) -> str | None:
    """Epoch microseconds as ISO 8601 UTC (whole seconds), None for unknown."""
    if us is None:
        return None
    return dt.datetime.fromtimestamp(us // 1_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _label(row: tuple[Any, ...]) -> dict[str, Any]:
    (
        label_id,
        label,
        category,
        source,
        confidence,
        first_seen,
        last_seen,
        definer,
        context,
        address,
        chain,
    ) = row
    return {
        "label_id": int(label_id),
        "label": label,
        "category": category,
        "source": source,
        "confidence": confidence,
        "first_seen": _iso(first_seen),
        "last_seen": _iso(last_seen),
        "is_cluster_definer": bool(definer),
        "context": json.loads(context) if context else None,
        "address": address,
        "chain": chain,
    }


_ORDER = " ORDER BY label_id"


def labels_for_keys(
    con: duckdb.DuckDBPyConnection, chain: str, keys: list[bytes]
) -> dict[bytes, list[dict[str, Any]]]:
    """The labels of each address key on ``chain`` (keys without labels are absent from the answer)."""
    if not keys:
        return {}
    q = pa.table({"key": pa.array(list(dict.fromkeys(keys)), pa.binary())})
    out: dict[bytes, list[dict[str, Any]]] = {}
    with _registered(con, q) as view:
        rows = con.execute(
            f"SELECT l.key, {_L_FIELDS} FROM labels l JOIN {view} q ON l.key = q.key WHERE l.chain = ?"
            " ORDER BY l.label_id",
            [chain],
        ).fetchall()
    for key, *rest in rows:
        out.setdefault(bytes(key), []).append(_label(tuple(rest)))
    return out


def labels_for_address_ids(
    con: duckdb.DuckDBPyConnection, chain: str, ids: list[int]
) -> dict[int, list[dict[str, Any]]]:
    """The labels of each stored address id on ``chain`` (joined on the address key)."""
    if not ids:
        return {}
    q = pa.table({"address_id": pa.array(list(dict.fromkeys(ids)), pa.int64())})
    out: dict[int, list[dict[str, Any]]] = {}
    with _registered(con, q) as view:
        rows = con.execute(
            f"SELECT a.address_id, {_L_FIELDS} FROM {view} q"
            " JOIN addresses a ON a.address_id = q.address_id AND a.chain = ?"
            " JOIN labels l ON l.chain = a.chain AND l.key = a.key ORDER BY a.address_id, l.label_id",
            [chain],
        ).fetchall()
    for address_id, *rest in rows:
        out.setdefault(int(address_id), []).append(_label(tuple(rest)))
    return out


def address_ids_with_category(con: duckdb.DuckDBPyConnection, chain: str, category: str) -> list[int]:
    """Ids of the stored addresses on ``chain`` that carry at least one label of ``category``."""
    check_category(category)
    rows = con.execute(
        "SELECT DISTINCT a.address_id FROM labels l JOIN addresses a ON a.chain = l.chain AND a.key = l.key"
        " WHERE l.chain = ? AND l.category = ? ORDER BY 1",
        [chain, category],
    ).fetchall()
    return [int(r[0]) for r in rows]


def labels_version(con: duckdb.DuckDBPyConnection) -> str:
    """A fingerprint of every label and import: it changes whenever a label is added, edited, deleted or
    imported (a digest over the rows, their update times and the import times)."""
    row = con.execute(
        "SELECT count(*), coalesce(max(label_id), 0), coalesce(bit_xor(hash(label_id, source, chain, address,"
        " label, category, confidence, first_seen, last_seen, is_cluster_definer, context, updated_at)), 0)"
        " FROM labels"
    ).fetchall()[0]
    src = con.execute(
        "SELECT count(*), coalesce(bit_xor(hash(source, importer, path, imported_at, tag_count)), 0)"
        " FROM label_sources"
    ).fetchall()[0]
    text = f"{row[0]}:{row[1]}:{row[2]}:{src[0]}:{src[1]}"
    return f"{int(row[0])}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def parse_context(text: str | None) -> dict[str, Any] | None:
    """A user's context: a JSON object as given, any other text as ``{"note": text}``."""
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"note": text}
    return value if isinstance(value, dict) else {"note": text}


def check_source(source: str) -> str:
    s = source.strip()
    if not s:
        raise InvalidInput("empty source", "name where the label comes from, e.g. --source case-2024-17")
    if s.startswith(RESERVED_PREFIXES):
        raise InvalidInput(
            f"source {s!r} uses a prefix reserved for importers ({', '.join(RESERVED_PREFIXES)})",
            "choose another source name",
        )
    return s


def add_label(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    address: str,
    label: str,
    category: str,
    confidence: int | None = None,
    source: str = MANUAL_SOURCE,
    context: dict[str, Any] | None = None,
    is_cluster_definer: bool = False,
    first_seen: dt.datetime | None = None,
    last_seen: dt.datetime | None = None,
) -> dict[str, Any]:
    """Add one label (address parsed strictly, EIP-55 checked); returns it with its new ``label_id``."""
    r = resolve_on(chain, address, strict=True)
    if not label.strip():
        raise InvalidInput("empty label", "give the label text, e.g. --label 'Binance deposit'")
    check_category(category)
    check_confidence(confidence)
    source = check_source(source)
    now = _now()
    with transaction(con):
        label_id = int(scalar(con, "SELECT coalesce(max(label_id), 0) + 1 FROM labels"))
        con.execute(
            f"INSERT INTO labels ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                label_id,
                source,
                r.chain,
                r.address,
                r.key,
                label.strip(),
                category,
                confidence,
                first_seen,
                last_seen,
                is_cluster_definer,
                json.dumps(context, sort_keys=True) if context else None,
                now,
                now,
            ],
        )
    return get_label(con, label_id)


def get_label(con: duckdb.DuckDBPyConnection, label_id: int) -> dict[str, Any]:
    rows = con.execute(f"{_SELECT} WHERE label_id = ?", [label_id]).fetchall()
    if not rows:
        raise NotFound(f"no label with id {label_id}", "list labels with `fundtrail labels list`")
    return _label(rows[0])


def edit_label(
    con: duckdb.DuckDBPyConnection,
    label_id: int,
    label: str | None = None,
    category: str | None = None,
    confidence: int | None = None,
    context: dict[str, Any] | None = None,
    is_cluster_definer: bool | None = None,
) -> dict[str, Any]:
    """Change the given fields of one label (None: unchanged); returns the label as it now is."""
    get_label(con, label_id)
    sets: list[str] = []
    params: list[Any] = []
    if label is not None:
        if not label.strip():
            raise InvalidInput("empty label", "give the label text")
        sets.append("label = ?")
        params.append(label.strip())
    if category is not None:
        sets.append("category = ?")
        params.append(check_category(category))
    if confidence is not None:
        sets.append("confidence = ?")
        params.append(check_confidence(confidence))
    if context is not None:
        sets.append("context = ?")
        params.append(json.dumps(context, sort_keys=True))
    if is_cluster_definer is not None:
        sets.append("is_cluster_definer = ?")
        params.append(is_cluster_definer)
    if not sets:
        raise InvalidInput("nothing to change", "give at least one of --label, --category, --confidence, ...")
    with transaction(con):
        con.execute(
            f"UPDATE labels SET {', '.join(sets)}, updated_at = ? WHERE label_id = ?",
            [*params, _now(), label_id],
        )
    return get_label(con, label_id)


def delete_label(con: duckdb.DuckDBPyConnection, label_id: int) -> dict[str, Any]:
    """Delete one label; returns what was deleted."""
    gone = get_label(con, label_id)
    with transaction(con):
        con.execute("DELETE FROM labels WHERE label_id = ?", [label_id])
    return gone


@dataclass
class LabelList:
    labels: list[dict[str, Any]]
    total: int  # labels matching the filters; more than len(labels) when truncated

    @property
    def truncated(self) -> bool:
        return self.total > len(self.labels)


def list_labels(
    con: duckdb.DuckDBPyConnection,
    chain: str | None = None,
    address: str | None = None,
    source: str | None = None,
    category: str | None = None,
    limit: int = 100,
) -> LabelList:
    """Labels matching every given filter, in label_id order, at most ``limit`` (with the total)."""
    if limit < 1:
        raise InvalidInput(f"--limit {limit} is not positive", "give --limit 1 or more")
    where: list[str] = []
    params: list[Any] = []
    if chain is not None:
        where.append("chain = ?")
        params.append(chain)
    if address is not None:
        if chain is not None:
            r = resolve_on(chain, address, strict=False)
            if r.key is not None:
                where.append("key = ?")
                params.append(r.key)
            else:
                where.append("address = ?")
                params.append(r.address)
        else:
            where.append("lower(address) = lower(?)")
            params.append(address.strip())
    if source is not None:
        where.append("source = ?")
        params.append(source)
    if category is not None:
        where.append("category = ?")
        params.append(check_category(category))
    cond = f" WHERE {' AND '.join(where)}" if where else ""
    total = int(scalar(con, f"SELECT count(*) FROM labels{cond}", params))
    rows = con.execute(f"{_SELECT}{cond}{_ORDER} LIMIT ?", [*params, limit]).fetchall()
    return LabelList([_label(r) for r in rows], total)


def sources(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every imported source with its importer, path, import time and tag count."""
    rows = con.execute(
        "SELECT source, importer, path, epoch_us(imported_at), tag_count FROM label_sources ORDER BY source"
    ).fetchall()
    return [
        {"source": s, "importer": i, "path": p, "imported_at": _iso(t), "tag_count": int(n)}
        for s, i, p, t, n in rows
    ]

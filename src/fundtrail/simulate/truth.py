"""The ground truth a simulated world writes beside its chains, and the one reader every consumer uses.

Layout of ``DIR/truth/`` (Parquet, one file per table; amounts are exact ``decimal128(38, 0)`` in the
asset's base unit: satoshi, wei, or USDT's 10^-6):

- ``actors``: every actor of the world: ``actor_id``, ``name``, ``kind`` (retail, merchant, exchange, ...),
  ``role`` (``service``, ``user``, ``criminal``, ``victim``), ``illicit``.
- ``addresses``: every address an actor controls: ``chain``, ``address`` (as fundtrail shows it),
  ``actor_id``, ``purpose`` (receive, change, deposit, hot, cold, fresh, ...).
- ``operations``: every laundering operation: ``operation_id``, ``typology``, ``case`` (a training case's
  name, or null), ``actor_id`` (the perpetrator), ``start_time``/``end_time`` (Unix seconds),
  ``amount`` (the illicit value at its source), ``asset``, ``chain`` (where it starts), ``description``.
- ``operation_txs``: ``operation_id``, ``chain``, ``txid``, ``step`` (order within the operation),
  ``role`` (theft, peel, split, merge, mix, bridge, swap, cashout, ...).
- ``operation_addresses``: ``operation_id``, ``chain``, ``address``, ``role`` (source, victim, layer,
  cashout, perpetrator, ...).
- ``seeds``: where an investigator would start tracing each leg of an operation: ``operation_id``,
  ``leg`` (0 on the origin chain, 1 after a bridge ...), ``chain``, ``seed`` (as ``fundtrail trace --from``
  takes it: ``txid:vout`` on a UTXO chain, a tx hash on an account chain), ``asset``, ``amount``.
- ``cashouts``: the exact illicit value that reached each cash-out point: ``operation_id``, ``leg``,
  ``chain``, ``asset``, ``address`` (an exchange deposit address, an OTC desk ...), ``actor_id`` (who owns
  it), ``txid``, ``amount``.

Beside it: ``truth/labels.yaml`` (a TagPack of what a real investigator would know: exchanges, mixers,
sanctioned entities), ``truth/manifest.json`` (scenario, seed, counts, chain tips) and ``cases/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fundtrail.errors import CorruptData, InvalidInput

AMOUNT = pa.decimal128(38, 0)

SCHEMAS: dict[str, pa.Schema] = {
    "actors": pa.schema(
        [
            ("actor_id", pa.int64()),
            ("name", pa.string()),
            ("kind", pa.string()),
            ("role", pa.string()),
            ("illicit", pa.bool_()),
        ]
    ),
    "addresses": pa.schema(
        [("chain", pa.string()), ("address", pa.string()), ("actor_id", pa.int64()), ("purpose", pa.string())]
    ),
    "operations": pa.schema(
        [
            ("operation_id", pa.int64()),
            ("typology", pa.string()),
            ("case", pa.string()),
            ("actor_id", pa.int64()),
            ("start_time", pa.int64()),
            ("end_time", pa.int64()),
            ("amount", AMOUNT),
            ("asset", pa.string()),
            ("chain", pa.string()),
            ("description", pa.string()),
        ]
    ),
    "operation_txs": pa.schema(
        [
            ("operation_id", pa.int64()),
            ("chain", pa.string()),
            ("txid", pa.string()),
            ("step", pa.int64()),
            ("role", pa.string()),
        ]
    ),
    "operation_addresses": pa.schema(
        [
            ("operation_id", pa.int64()),
            ("chain", pa.string()),
            ("address", pa.string()),
            ("role", pa.string()),
        ]
    ),
    "seeds": pa.schema(
        [
            ("operation_id", pa.int64()),
            ("leg", pa.int64()),
            ("chain", pa.string()),
            ("seed", pa.string()),
            ("asset", pa.string()),
            ("amount", AMOUNT),
        ]
    ),
    "cashouts": pa.schema(
        [
            ("operation_id", pa.int64()),
            ("leg", pa.int64()),
            ("chain", pa.string()),
            ("asset", pa.string()),
            ("address", pa.string()),
            ("actor_id", pa.int64()),
            ("txid", pa.string()),
            ("amount", AMOUNT),
        ]
    ),
}

TABLES = tuple(SCHEMAS)


def truth_dir(root: Path) -> Path:
    """``root`` may be a simulation's output directory or its ``truth/`` directory itself."""
    return root if (root / "actors.parquet").exists() else root / "truth"


@dataclass(frozen=True)
class Truth:
    """A world's ground truth, read and checked: one Arrow table per name in ``SCHEMAS``."""

    root: Path
    tables: Mapping[str, pa.Table]
    manifest: Mapping[str, Any]

    def table(self, name: str) -> pa.Table:
        return self.tables[name]

    def rows(self, name: str) -> list[dict[str, Any]]:
        return self.tables[name].to_pylist()  # type: ignore[no-any-return]


def read_truth(root: Path) -> Truth:
    """Read ``DIR/truth`` (or a truth directory) strictly: every table present with its exact schema."""
    import json

    d = truth_dir(root)
    if not d.is_dir():
        raise InvalidInput(
            f"{root} is not a simulated world's output or truth directory",
            "pass the --out directory of `fundtrail simulate` (or its truth/ folder)",
        )
    tables: dict[str, pa.Table] = {}
    for name, schema in SCHEMAS.items():
        path = d / f"{name}.parquet"
        if not path.exists():
            raise CorruptData(f"{path} is missing from the truth", "re-run `fundtrail simulate`")
        try:
            t = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise CorruptData(
                f"{path} is not a readable Parquet file ({exc})", "re-run `fundtrail simulate`"
            ) from None
        if not t.schema.equals(schema, check_metadata=False):
            raise CorruptData(
                f"{path} has columns {t.schema.names} of other types than the truth's {schema.names}",
                "re-run `fundtrail simulate` with this version of fundtrail",
            )
        tables[name] = t
    manifest_path = d / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    return Truth(d, tables, manifest)


class TruthWriter:
    """Collects truth rows in memory per table and writes them as Parquet in bounded row groups.

    The large world's truth is a few million rows at most (operations are rare next to background
    activity), so rows are buffered per table and flushed every ``chunk`` rows."""

    def __init__(self, out: Path, chunk: int = 200_000) -> None:
        self.dir = out
        self.dir.mkdir(parents=True, exist_ok=True)
        self.chunk = chunk
        self._rows: dict[str, list[tuple[Any, ...]]] = {n: [] for n in SCHEMAS}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.counts: dict[str, int] = dict.fromkeys(SCHEMAS, 0)

    def add(self, table: str, *row: Any) -> None:
        rows = self._rows[table]
        rows.append(row)
        self.counts[table] += 1
        if len(rows) >= self.chunk:
            self._flush(table)

    def write_columns(self, table: str, columns: Mapping[str, Any]) -> None:
        """Write a batch given as columns (lists or Arrow arrays), bypassing the row buffer."""
        schema = SCHEMAS[table]
        batch = pa.table({f.name: pa.array(columns[f.name], f.type) for f in schema}, schema=schema)
        self.counts[table] += batch.num_rows
        self._writer(table).write_table(batch)

    def _writer(self, table: str) -> pq.ParquetWriter:
        w = self._writers.get(table)
        if w is None:
            w = self._writers[table] = pq.ParquetWriter(self.dir / f"{table}.parquet", SCHEMAS[table])
        return w

    def extend(self, table: str, rows: Iterable[tuple[Any, ...]]) -> None:
        for r in rows:
            self.add(table, *r)

    def _flush(self, table: str) -> None:
        rows = self._rows[table]
        schema = SCHEMAS[table]
        cols = list(zip(*rows)) if rows else [() for _ in schema.names]
        batch = pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(schema, cols)}, schema=schema)
        self._writer(table).write_table(batch)
        rows.clear()

    def close(self) -> None:
        for table in SCHEMAS:
            if self._rows[table] or table not in self._writers:
                self._flush(table)
            self._writers[table].close()

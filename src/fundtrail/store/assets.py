"""Token metadata in the store's ``assets`` table.

``metadata_source`` says where symbol, decimals and name come from: ``native`` (the chain's coin),
``registry`` (fundtrail's bundled list, :mod:`fundtrail.chains.assets`), ``contract`` (the token contract's
own ``symbol()``/``decimals()``/``name()`` answers, asked over RPC) or ``unknown`` (none: they stay null,
never guessed). Rows are created by the writers (:mod:`fundtrail.store.account_write`); this module only
reads and completes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

KNOWN_SOURCES = ("native", "registry", "contract")


@dataclass(frozen=True)
class ContractMetadata:
    contract: bytes
    symbol: str | None
    decimals: int | None
    name: str | None


def contracts_with_metadata(
    con: duckdb.DuckDBPyConnection, chain: str, contracts: Iterable[bytes]
) -> set[bytes]:
    """Those of ``contracts`` whose asset row already has metadata (from the registry or the contract)."""
    wanted = pa.table({"contract": pa.array(list(contracts), pa.binary())})
    con.register("meta_wanted", wanted)
    try:
        rows = con.execute(
            """SELECT a.contract FROM assets a JOIN meta_wanted w ON w.contract = a.contract
               WHERE a.chain = ? AND a.metadata_source IN ('native', 'registry', 'contract')""",
            [chain],
        ).fetchall()
    finally:
        con.unregister("meta_wanted")
    return {bytes(r[0]) for r in rows}


def set_contract_metadata(
    con: duckdb.DuckDBPyConnection, chain: str, answers: Iterable[ContractMetadata]
) -> int:
    """Record what token contracts answered, on their asset rows that have no metadata yet (``unknown``);
    a contract that answered nothing usable keeps its row unknown. Returns the rows updated. Runs in the
    caller's transaction, if any."""
    usable = [a for a in answers if (a.symbol, a.decimals, a.name) != (None, None, None)]
    if not usable:
        return 0
    table = pa.table({
        "contract": pa.array([a.contract for a in usable], pa.binary()),
        "symbol": pa.array([a.symbol for a in usable], pa.string()),
        "decimals": pa.array([a.decimals for a in usable], pa.int32()),
        "name": pa.array([a.name for a in usable], pa.string()),
    })  # fmt: skip
    con.register("meta_answers", table)
    try:
        n = con.execute(
            """UPDATE assets SET symbol = m.symbol, decimals = m.decimals, name = m.name,
                      metadata_source = 'contract'
               FROM meta_answers m
               WHERE assets.chain = ? AND assets.contract = m.contract
                 AND assets.metadata_source = 'unknown'""",
            [chain],
        ).fetchall()
    finally:
        con.unregister("meta_answers")
    return int(n[0][0]) if n else 0

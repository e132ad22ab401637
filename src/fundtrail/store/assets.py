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

from fundtrail.chains.assets import NATIVE
from fundtrail.chains.registry import Chain
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.store.db import first

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


UTXO_ASSET_ID = -1  # a UTXO chain's coin: it has no ``assets`` row


@dataclass(frozen=True)
class AssetRef:
    """An asset a user named: ``asset_id`` (None: the chain's native coin has no stored data yet),
    a display name and the decimals (None where unknown)."""

    asset_id: int | None
    name: str
    decimals: int | None


def resolve_asset(con: duckdb.DuckDBPyConnection, c: Chain, text: str | None) -> AssetRef:
    """The asset ``text`` names on chain ``c``: nothing, ``native`` or the native symbol (the chain's
    coin), a stored asset id, a token contract address, or a token symbol (case-insensitive, unique on
    the chain). One resolver serves ``trace --asset``, ``exposure --asset`` and ``screen --asset``."""
    t = None if text is None else text.strip()
    if c.family == "bitcoin":
        if t is not None and t.lower() not in ("native", "btc", "xbt", str(UTXO_ASSET_ID)):
            raise InvalidInput(
                f"asset {text!r} is not an asset of {c.name}", "Bitcoin chains have one asset: native"
            )
        return AssetRef(UTXO_ASSET_ID, "BTC", 8)
    native = NATIVE[c.name].symbol or ""
    if t is None or t.lower() == "native" or t.upper() == native.upper():
        row = first(
            con,
            "SELECT asset_id, symbol, decimals FROM assets WHERE chain = ? AND contract IS NULL",
            [c.name],
        )
        if row is None:
            return AssetRef(None, native, NATIVE[c.name].decimals)
        return AssetRef(int(row[0]), str(row[1] or native), row[2])
    if t.lstrip("-").isdigit():
        row = first(
            con, "SELECT asset_id, symbol, decimals, contract FROM assets WHERE chain = ? AND asset_id = ?",
            [c.name, int(t)],
        )  # fmt: skip
        if row is None:
            raise NotFound(f"no asset {text!r} on {c.name}", "give an asset id, a symbol or 'native'")
        return AssetRef(int(row[0]), _name(c, row[1], row[3], native), row[2])
    try:
        contract = c.parse(t)
    except InvalidInput:
        rows = con.execute(
            "SELECT asset_id, symbol, decimals FROM assets WHERE chain = ? AND upper(symbol) = upper(?)",
            [c.name, t],
        ).fetchall()
        if len(rows) != 1:
            raise InvalidInput(
                f"asset {text!r} is {'ambiguous' if rows else 'unknown'} on {c.name}",
                "give the token contract address (or the native symbol)",
            ) from None
        return AssetRef(int(rows[0][0]), str(rows[0][1]), rows[0][2])
    row = first(
        con,
        "SELECT asset_id, symbol, decimals FROM assets WHERE chain = ? AND contract = ?",
        [c.name, contract],
    )
    if row is None:
        raise NotFound(f"token {t} never moved in the stored {c.name} data", "check the contract address")
    return AssetRef(int(row[0]), str(row[1] or c.show(contract)), row[2])


def _name(c: Chain, symbol: str | None, contract: bytes | None, native: str) -> str:
    if symbol:
        return symbol
    return native if contract is None else c.show(bytes(contract))

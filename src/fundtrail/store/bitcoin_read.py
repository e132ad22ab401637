"""Reading Bitcoin data back: the answers of ``show block|tx|address`` and ``summary`` as plain dicts
(the CLI's and, later, the API's JSON shapes). Values are satoshi integers; None where unknown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np

from fundtrail.chains.bitcoin.address import key_to_address, parse_address
from fundtrail.chains.bitcoin.coinjoin import detect_one
from fundtrail.chains.bitcoin.network import Network
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.store.db import first
from fundtrail.store.utxo_view import load_view

JSON = dict[str, Any]


def iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_hash(text: str, what: str) -> bytes:
    """A 64-hex-digit block hash or txid, strictly."""
    s = text.strip().lower()
    if len(s) != 64:
        raise InvalidInput(f"{what} {text!r} is {len(s)} characters long", f"a {what} is 64 hex digits")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not hexadecimal", f"a {what} is 64 hex digits") from None


_BLOCK_COLS = "hash, height, prev_hash, time, tx_count, merkle_root, merkle_ok, witness_ok, size, weight, \
version, bits, nonce, height_source"


def block(con: duckdb.DuckDBPyConnection, net: Network, ref: str) -> JSON:
    ref = ref.strip()
    if ref.isdigit():
        row = first(
            con,
            f"SELECT {_BLOCK_COLS} FROM blocks WHERE chain = ? AND height = ? ORDER BY block_id LIMIT 1",
            [net.chain, int(ref)],
        )
        missing = f"no {net.chain} block at height {ref} in the store"
    else:
        h = parse_hash(ref, "block hash")
        row = first(con, f"SELECT {_BLOCK_COLS} FROM blocks WHERE chain = ? AND hash = ?", [net.chain, h])
        missing = f"block {ref} is not in the store ({net.chain})"
    if row is None:
        raise NotFound(missing, "ingest it first (fundtrail ingest bitcoin-blocks|bitcoin-rpc)")
    return {
        "chain": net.chain,
        "hash": bytes(row[0]).hex(),
        "height": row[1],
        "prev_hash": bytes(row[2]).hex(),
        "time": iso(row[3]),
        "tx_count": row[4],
        "merkle_root": bytes(row[5]).hex(),
        "merkle_ok": row[6],
        "witness_commitment_ok": row[7],
        "size": row[8],
        "weight": row[9],
        "version": row[10],
        "bits": f"{row[11]:08x}",
        "nonce": row[12],
        "height_source": row[13],
    }


def _addr(net: Network, key: Any) -> str | None:
    return None if key is None else key_to_address(bytes(key), net)


def tx(con: duckdb.DuckDBPyConnection, net: Network, txid_text: str) -> JSON:
    txid = parse_hash(txid_text, "txid")
    row = first(
        con,
        """SELECT t.tx_id, b.hash, b.height, b.time, t.fee, t.is_coinbase, t.size, t.weight, t.version,
                  t.locktime, t.input_value, t.output_value, t.wtxid, t.coinbase_script
           FROM transactions t LEFT JOIN blocks b ON b.block_id = t.block_id
           WHERE t.chain = ? AND t.txid = ? ORDER BY t.tx_id DESC LIMIT 1""",
        [net.chain, txid],
    )
    if row is None:
        raise NotFound(
            f"transaction {txid.hex()} is not in the store ({net.chain})",
            "ingest the block that holds it first (or the raw transaction: fundtrail ingest bitcoin-tx)",
        )
    tx_id = row[0]
    inputs = con.execute(
        """SELECT i.prev_txid, i.prev_vout, a.key, i.value, i.resolved, i.sequence
           FROM tx_inputs i LEFT JOIN addresses a ON a.address_id = i.address_id
           WHERE i.tx_id = ? ORDER BY i.n""",
        [tx_id],
    ).fetchall()
    outputs = con.execute(
        """SELECT o.n, a.key, o.value, o.script_type, o.script
           FROM tx_outputs o LEFT JOIN addresses a ON a.address_id = o.address_id
           WHERE o.tx_id = ? ORDER BY o.n""",
        [tx_id],
    ).fetchall()
    is_coinbase = bool(row[5])
    loose = row[1] is None
    conflicts = double_spends(con, net.chain, [tx_id]).get(tx_id, [])
    if not loose:  # a confirmed transaction conflicts only with loose ones (blocks are not checked)
        conflicts = [c for c in conflicts if not c.confirmed]
    out: JSON = {
        "chain": net.chain,
        "txid": txid.hex(),
        "status": _status(loose, conflicts),
        "block_hash": None if loose else bytes(row[1]).hex(),
        "height": row[2],
        "time": iso(row[3]),
        "inputs": [
            {
                "prev_txid": bytes(p).hex(),
                "prev_vout": v,
                "address": _addr(net, k),
                "value": val,
                "resolved": res,
                "sequence": seq,
                **({"coinbase": True} if is_coinbase else {}),
            }
            for p, v, k, val, res, seq in inputs
        ],
        "outputs": [
            {
                "n": n,
                "address": _addr(net, k),
                "value": val,
                "script_type": stype,
                **({"script": bytes(script).hex()} if script is not None else {}),
            }
            for n, k, val, stype, script in outputs
        ],
        "fee": row[4],
        "is_coinbase": is_coinbase,
        "coinjoin": coinjoin_of_tx(con, net.chain, tx_id),
        "input_value": row[10],
        "output_value": row[11],
        "size": row[6],
        "vsize": (row[7] + 3) // 4,
        "weight": row[7],
        "version": row[8],
        "locktime": row[9],
        "wtxid": bytes(row[12]).hex(),
    }
    if row[13] is not None:
        out["coinbase_script"] = bytes(row[13]).hex()
    if conflicts:
        out["conflicts"] = [
            {"input": c.n, "spends": f"{c.prev_txid}:{c.prev_vout}", "txid": c.txid, "confirmed": c.confirmed,
             "height": c.height}
            for c in conflicts
        ]  # fmt: skip
    return out


LOOSE_STATUS = "unconfirmed (loaded from raw transaction)"


def _status(loose: bool, conflicts: list[Conflict]) -> str:
    """``confirmed`` (in a stored block) or LOOSE_STATUS; a double spend is named."""
    if not loose:
        return "confirmed" + (" (a stored raw transaction double-spends its inputs)" if conflicts else "")
    confirmed = [c for c in conflicts if c.confirmed]
    if confirmed:
        c = confirmed[0]
        at = f" at height {c.height}" if c.height is not None else ""
        return f"{LOOSE_STATUS}; conflicted: input {c.n} is spent by confirmed transaction {c.txid}{at}"
    if conflicts:
        return f"{LOOSE_STATUS}; conflicts with unconfirmed transaction {conflicts[0].txid}"
    return LOOSE_STATUS


def address(con: duckdb.DuckDBPyConnection, net: Network, text: str) -> JSON:
    key = parse_address(text, net)
    row = first(con, "SELECT address_id FROM addresses WHERE chain = ? AND key = ?", [net.chain, key])
    if row is None:
        raise NotFound(
            f"address {text.strip()} never appears in the stored {net.chain} blocks",
            "ingest the blocks where it is used, or check the address",
        )
    aid = row[0]
    stats = first(
        con,
        """WITH o AS (SELECT tx_id, value FROM tx_outputs WHERE address_id = $aid),
                i AS (SELECT tx_id, value FROM tx_inputs WHERE address_id = $aid),
                t AS (SELECT tx_id FROM o UNION SELECT tx_id FROM i),
                times AS (SELECT b.time FROM t JOIN transactions x ON x.tx_id = t.tx_id
                          JOIN blocks b ON b.block_id = x.block_id),
                loose AS (SELECT t.tx_id FROM t JOIN transactions x ON x.tx_id = t.tx_id
                          WHERE x.block_id IS NULL)
           SELECT (SELECT count(*) FROM t),
                  (SELECT coalesce(sum(value), 0)::BIGINT FROM o),
                  (SELECT coalesce(sum(value), 0)::BIGINT FROM i),
                  (SELECT min(time) FROM times), (SELECT max(time) FROM times),
                  (SELECT count(*) FROM o),
                  (SELECT count(*) FROM loose),
                  (SELECT coalesce(sum(value), 0)::BIGINT FROM o WHERE tx_id IN (FROM loose)),
                  (SELECT coalesce(sum(value), 0)::BIGINT FROM i WHERE tx_id IN (FROM loose))""",
        {"aid": aid},
    )
    assert stats is not None
    tx_count, received, sent, first_time, last_time, n_out, n_loose, loose_in, loose_out = stats
    return {
        "chain": net.chain,
        "address": key_to_address(key, net),
        "address_id": aid,
        "tx_count": tx_count,
        "received": received,
        "sent": sent,
        "balance": received - sent,
        "first_seen": iso(first_time),
        "last_seen": iso(last_time),
        "outputs_received": n_out,
        # loose transactions (ingest bitcoin-tx) are counted above too; here is their share
        "unconfirmed": {"tx_count": n_loose, "received": loose_in, "sent": loose_out},
    }


def summary(con: duckdb.DuckDBPyConnection) -> list[JSON]:
    """Per chain: blocks, height range, txs, inputs (unresolved), outputs, addresses, value moved."""
    rows = con.execute(
        """WITH b AS (SELECT * FROM blocks WHERE merkle_root IS NOT NULL),
                chains AS (SELECT DISTINCT chain FROM b UNION SELECT DISTINCT chain FROM transactions)
           SELECT c.chain, count(b.block_id), min(b.height), max(b.height),
                  count(b.block_id) FILTER (b.height IS NULL),
                  (SELECT count(*) FROM transactions t WHERE t.chain = c.chain),
                  (SELECT count(*) FROM tx_inputs i WHERE i.chain = c.chain),
                  (SELECT count(*) FROM unresolved_inputs u WHERE u.chain = c.chain),
                  (SELECT count(*) FROM tx_outputs o WHERE o.chain = c.chain),
                  (SELECT count(*) FROM addresses a WHERE a.chain = c.chain),
                  (SELECT coalesce(sum(output_value), 0)::BIGINT FROM transactions t
                    WHERE t.chain = c.chain AND NOT t.is_coinbase),
                  (SELECT coalesce(sum(output_value), 0)::BIGINT FROM transactions t
                    WHERE t.chain = c.chain AND t.is_coinbase),
                  (SELECT coalesce(sum(fee), 0)::BIGINT FROM transactions t WHERE t.chain = c.chain),
                  (SELECT count(*) FROM transactions t
                    WHERE t.chain = c.chain AND NOT t.is_coinbase AND t.fee IS NULL),
                  (SELECT count(*) FROM transactions t WHERE t.chain = c.chain AND t.block_id IS NULL)
           FROM chains c LEFT JOIN b ON b.chain = c.chain GROUP BY c.chain ORDER BY c.chain"""
    ).fetchall()
    return [
        {
            "chain": r[0],
            "blocks": r[1],
            "min_height": r[2],
            "max_height": r[3],
            "blocks_without_height": r[4],
            "transactions": r[5],
            "inputs": r[6],
            "unresolved_inputs": r[7],
            "outputs": r[8],
            "addresses": r[9],
            "value_moved": r[10],
            "value_minted": r[11],
            "fees_known": r[12],
            "txs_with_unknown_fee": r[13],
            "unconfirmed_transactions": r[14],  # loose (ingest bitcoin-tx), counted in "transactions" too
        }
        for r in rows
    ]


@dataclass
class Conflict:
    """Another stored transaction spending an output that a loose transaction spends (a double spend)."""

    n: int  # the loose transaction's input
    prev_txid: str
    prev_vout: int
    txid: str  # the other transaction
    height: int | None  # of the other transaction's block; None when loose or the height is unknown
    confirmed: bool  # the other transaction is in a stored block


def double_spends(con: duckdb.DuckDBPyConnection, chain: str, tx_ids: list[int]) -> dict[int, list[Conflict]]:
    """Per tx_id: the other stored transactions (another txid) that spend an output it spends."""
    if not tx_ids:
        return {}
    rows = con.execute(
        """WITH mine AS (SELECT tx_id, n, prev_txid, prev_vout FROM tx_inputs
                         WHERE chain = $chain AND tx_id IN (SELECT unnest($ids)))
           SELECT m.tx_id, m.n, m.prev_txid, m.prev_vout, o.txid, b.height, o.block_id IS NOT NULL
           FROM mine m
           JOIN tx_inputs x ON x.chain = $chain AND x.prev_txid = m.prev_txid AND x.prev_vout = m.prev_vout
                           AND x.tx_id <> m.tx_id
           JOIN transactions o ON o.chain = $chain AND o.tx_id = x.tx_id
           JOIN transactions t ON t.chain = $chain AND t.tx_id = m.tx_id
           LEFT JOIN blocks b ON b.block_id = o.block_id
           WHERE o.txid <> t.txid
           ORDER BY m.tx_id, m.n, o.tx_id""",
        {"chain": chain, "ids": tx_ids},
    ).fetchall()
    out: dict[int, list[Conflict]] = {}
    for tx_id, n, prev, vout, other, height, confirmed in rows:
        out.setdefault(int(tx_id), []).append(
            Conflict(int(n), bytes(prev).hex(), int(vout), bytes(other).hex(), height, bool(confirmed))
        )
    return out


def coinjoin_of_tx(con: duckdb.DuckDBPyConnection, chain: str, tx_id: int) -> JSON:
    """``{"detected": bool, "family": name or None}`` for one stored transaction (``show tx --json``);
    the detectors are in :mod:`fundtrail.chains.bitcoin.coinjoin`."""
    view = load_view(con, chain, tx_ids=np.array([tx_id], np.int64))
    if len(view) == 0:
        raise NotFound(f"transaction {tx_id} is not in the store ({chain})", "ingest it first")
    family = detect_one(view, 0)
    return {"detected": family is not None, "family": family}

"""Reading account-chain data back: ``show block|tx|address`` for EVM chains and TRON, as plain dicts.

Amounts are integers in base units (wei, sun, token units); each also comes as a decimal string scaled by
the asset's decimals for people (null where the decimals are unknown: never guessed).
"""

from __future__ import annotations

from typing import Any

import duckdb

from fundtrail.chains.registry import Chain
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.store.bitcoin_read import iso
from fundtrail.store.db import first
from fundtrail.store.lookup import address_id

JSON = dict[str, Any]


def decimal_text(amount: int | None, decimals: int | None) -> str | None:
    """``amount`` base units as an exact decimal string (``1234500, 6 -> "1.2345"``)."""
    if amount is None or decimals is None:
        return None
    sign = "-" if amount < 0 else ""
    q, r = divmod(abs(amount), 10**decimals)
    frac = f"{r:0{decimals}d}".rstrip("0") if decimals else ""
    return f"{sign}{q}{'.' + frac if frac else ''}"


def parse_tx_hash(text: str) -> bytes:
    s = text.strip().lower().removeprefix("0x")
    if len(s) != 64:
        raise InvalidInput(f"transaction hash {text!r} is {len(s)} hex digits long", "give 64 hex digits")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise InvalidInput(f"transaction hash {text!r} is not hexadecimal", "give 64 hex digits") from None


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _addr(c: Chain, key: Any) -> str | None:
    return None if key is None else c.show(bytes(key))


def _hex(b: Any) -> str | None:
    return None if b is None else "0x" + bytes(b).hex()


def block(con: duckdb.DuckDBPyConnection, c: Chain, ref: str) -> JSON:
    ref = ref.strip()
    cols = """b.hash, b.height, b.prev_hash, b.time, b.tx_count, a.key, b.gas_used, b.base_fee::VARCHAR,
              b.source"""
    base = f"SELECT {cols} FROM blocks b LEFT JOIN addresses a ON a.address_id = b.miner_id WHERE b.chain = ?"
    if ref.isdigit():
        row = first(con, base + " AND b.height = ? ORDER BY b.block_id LIMIT 1", [c.name, int(ref)])
    else:
        row = first(con, base + " AND b.hash = ?", [c.name, parse_tx_hash(ref)])
    if row is None:
        raise NotFound(f"no {c.name} block {ref} in the store", "ingest it first (fundtrail ingest ...)")
    return {
        "chain": c.name,
        "hash": _hex(row[0]),
        "height": row[1],
        "prev_hash": _hex(row[2]),
        "time": iso(row[3]),
        "tx_count": row[4],
        "merkle_root": None,
        "merkle_ok": None,
        "miner": _addr(c, row[5]),
        "gas_used": row[6],
        "base_fee": _int(row[7]),
        "source": row[8],
    }


def _transfers(con: duckdb.DuckDBPyConnection, c: Chain, where: str, params: list[Any]) -> list[JSON]:
    rows = con.execute(
        f"""SELECT t.kind, s.symbol, s.contract, s.decimals, f.key, r.key, t.amount::VARCHAR, t.log_index,
                   t.trace_position
            FROM transfers t JOIN assets s ON s.asset_id = t.asset_id
            JOIN addresses f ON f.address_id = t.from_id JOIN addresses r ON r.address_id = t.to_id
            WHERE {where}
            ORDER BY CASE t.kind WHEN 'native' THEN 0 WHEN 'internal' THEN 1 WHEN 'token' THEN 2 ELSE 3 END,
                     t.log_index, t.trace_position""",
        params,
    ).fetchall()
    return [
        {
            "kind": kind,
            "asset": symbol or (_addr(c, contract) if contract is not None else None),
            "contract": _addr(c, contract),
            "decimals": decimals,
            "from": _addr(c, f),
            "to": _addr(c, r),
            "amount": int(amount),
            "amount_decimal": decimal_text(int(amount), decimals),
            "log_index": log_index,
            "trace_position": trace,
        }
        for kind, symbol, contract, decimals, f, r, amount, log_index, trace in rows
    ]


def tx(con: duckdb.DuckDBPyConnection, c: Chain, text: str) -> JSON:
    h = parse_tx_hash(text)
    row = first(
        con,
        """SELECT t.tx_id, b.hash, b.height, b.time, f.key, r.key, k.key, t.value::VARCHAR, t.fee::VARCHAR,
                  t.status, t.nonce, t.gas, t.gas_used, t.gas_price::VARCHAR, t.method, t.tx_type, t.position
           FROM account_txs t JOIN blocks b ON b.block_id = t.block_id
           JOIN addresses f ON f.address_id = t.from_id
           LEFT JOIN addresses r ON r.address_id = t.to_id
           LEFT JOIN addresses k ON k.address_id = t.created_id
           WHERE t.chain = ? AND t.hash = ?""",
        [c.name, h],
    )
    if row is None:
        raise NotFound(f"transaction 0x{h.hex()} is not in the store ({c.name})", "ingest its block first")
    return {
        "chain": c.name,
        "txid": "0x" + h.hex(),
        "block_hash": _hex(row[1]),
        "height": row[2],
        "time": iso(row[3]),
        "position": row[16],
        "from": _addr(c, row[4]),
        "to": _addr(c, row[5]),
        "created_contract": _addr(c, row[6]),
        "value": int(row[7]),
        "fee": _int(row[8]),
        "status": None if row[9] is None else ("success" if row[9] else "failed"),
        "nonce": row[10],
        "gas": row[11],
        "gas_used": row[12],
        "gas_price": _int(row[13]),
        "method": _hex(row[14]),
        "type": row[15],
        "transfers": _transfers(con, c, "t.tx_id = ?", [row[0]]),
    }


def address(con: duckdb.DuckDBPyConnection, c: Chain, text: str) -> JSON:
    key = c.parse(text)
    aid = address_id(con, c, text)
    stats = first(
        con,
        """WITH t AS (SELECT tx_id, tx_hash, block_id FROM transfers WHERE from_id = $a OR to_id = $a
                      UNION SELECT tx_id, hash, block_id FROM account_txs WHERE from_id = $a OR to_id = $a)
           SELECT count(DISTINCT coalesce(t.tx_hash, t.tx_id::VARCHAR::BLOB)), min(b.time), max(b.time)
           FROM t JOIN blocks b ON b.block_id = t.block_id""",
        {"a": aid},
    )
    assert stats is not None
    assets = con.execute(
        """SELECT s.symbol, s.contract, s.decimals,
                  coalesce(sum(t.amount) FILTER (t.to_id = $a), 0)::VARCHAR,
                  coalesce(sum(t.amount) FILTER (t.from_id = $a), 0)::VARCHAR
           FROM transfers t JOIN assets s ON s.asset_id = t.asset_id
           WHERE t.from_id = $a OR t.to_id = $a
           GROUP BY s.asset_id, s.symbol, s.contract, s.decimals ORDER BY s.contract NULLS FIRST""",
        {"a": aid},
    ).fetchall()
    out: dict[str, JSON] = {}
    for symbol, contract, decimals, received, sent in assets:
        r, s = int(received), int(sent)
        name = symbol or _addr(c, contract) or "?"
        if name in out:  # two contracts claiming one symbol: keep both, told apart by contract
            name = f"{name} ({_addr(c, contract)})"
        out[name] = {
            "contract": _addr(c, contract),
            "decimals": decimals,
            "received": r,
            "sent": s,
            "balance": r - s,
            "received_decimal": decimal_text(r, decimals),
            "sent_decimal": decimal_text(s, decimals),
            "balance_decimal": decimal_text(r - s, decimals),
        }
    return {
        "chain": c.name,
        "address": c.show(key),
        "address_id": aid,
        "tx_count": stats[0],
        "first_seen": iso(stats[1]),
        "last_seen": iso(stats[2]),
        "assets": out,
    }


def summary(con: duckdb.DuckDBPyConnection) -> list[JSON]:
    """Per account chain: blocks, height range, transactions (failed, without receipt), transfers by kind,
    addresses, assets (and how many have unknown decimals)."""
    rows = con.execute(
        """SELECT b.chain, count(*), min(b.height), max(b.height),
                  (SELECT count(*) FROM account_txs t WHERE t.chain = b.chain),
                  (SELECT count(*) FROM account_txs t WHERE t.chain = b.chain AND t.status = FALSE),
                  (SELECT count(*) FROM account_txs t WHERE t.chain = b.chain AND t.status IS NULL),
                  (SELECT count(*) FROM addresses a WHERE a.chain = b.chain),
                  (SELECT count(*) FROM assets s WHERE s.chain = b.chain),
                  (SELECT count(*) FROM assets s WHERE s.chain = b.chain AND s.decimals IS NULL)
           FROM blocks b WHERE b.merkle_root IS NULL  -- account chains: no merkle root is stored
           GROUP BY b.chain ORDER BY b.chain"""
    ).fetchall()
    kinds = con.execute("SELECT chain, kind, count(*) FROM transfers GROUP BY ALL ORDER BY ALL").fetchall()
    out = []
    for r in rows:
        out.append(
            {
                "chain": r[0],
                "blocks": r[1],
                "min_height": r[2],
                "max_height": r[3],
                "transactions": r[4],
                "failed_transactions": r[5],
                "transactions_without_receipt": r[6],
                "transfers": {k: n for c, k, n in kinds if c == r[0]},
                "addresses": r[7],
                "assets": r[8],
                "assets_with_unknown_decimals": r[9],
            }
        )
    return out

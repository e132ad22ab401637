"""The cluster flow graph the exposure job runs on, built in the store (bulk SQL, no row loops).

``build`` leaves two temporary tables on the connection:

- ``_ft_txflow (src, dst, tx_id, amount)``: value one transaction moved from cluster ``src`` to a
  different cluster ``dst`` (self-flows and zero amounts dropped);
- ``_ft_edges (src, dst, amount, amount_f)``: those summed per cluster pair, exact (``amount``) and as
  float64 (``amount_f``, what the compiled propagation reads), ordered by (src, dst).

Bitcoin (asset -1, the chain's coin): every non-coinbase transaction whose inputs are all resolved (its
fee is known). Inputs are summed per input cluster (inputs without an address, e.g. bare multisig, form
one group whose share goes nowhere), outputs per output cluster (outputs without an address receive
nothing). Each output cluster's amount is split over the input groups in proportion to their input
value: floor(out * in / total in), the units left over going one each to the largest remainders (ties:
the smaller cluster id, the address-less group last), so every output is split exactly. Fees go nowhere.

Account chains: the transfers of the asset (``native``, ``token``, ``internal``, ``withdrawal``), fees
(``kind = 'fee'``, to the ``(fees)`` pseudo-address) left out, summed per (tx, src, dst). Amounts stay
BIGNUM (uint256) until written, where they are clamped to HUGEINT's maximum (2^127 - 1; counted).
"""

from __future__ import annotations

import duckdb
import numpy as np
import numpy.typing as npt

from fundtrail.store.db import arrow, scalar

I64 = npt.NDArray[np.int64]
HUGEINT_MAX = (1 << 127) - 1
BITCOIN_ASSET = -1  # Bitcoin has no ``assets`` row: its coin is asset -1


def huge(expr: str, family: str) -> str:
    """``expr`` as HUGEINT: BIGNUM amounts (account chains) clamped to 2^127 - 1."""
    if family == "bitcoin":
        return f"({expr})::HUGEINT"
    return f"least({expr}, '{HUGEINT_MAX}'::BIGNUM)::VARCHAR::HUGEINT"


def clamped_count(con: duckdb.DuckDBPyConnection, family: str) -> int:
    if family == "bitcoin":
        return 0
    return int(scalar(con, f"SELECT count(*) FROM _ft_edges WHERE amount > '{HUGEINT_MAX}'::BIGNUM") or 0)


def build(con: duckdb.DuckDBPyConnection, chain: str, family: str, asset_id: int) -> None:
    if family == "bitcoin":
        _bitcoin_txflow(con, chain)
    else:
        _account_txflow(con, chain, asset_id)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ft_edges AS
           SELECT src, dst, sum(amount) AS amount, sum(amount)::DOUBLE AS amount_f
           FROM _ft_txflow GROUP BY src, dst ORDER BY src, dst"""
    )


def _bitcoin_txflow(con: duckdb.DuckDBPyConnection, chain: str) -> None:
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ft_txflow AS
           WITH txs AS (
               SELECT tx_id, input_value AS total FROM transactions
               WHERE chain = $chain AND NOT is_coinbase AND fee IS NOT NULL AND input_value > 0),
           ins AS (
               SELECT i.tx_id, coalesce(ic.cluster_id, i.address_id, -1) AS src, sum(i.value) AS v
               FROM tx_inputs i JOIN txs USING (tx_id)
               LEFT JOIN clusters ic ON ic.chain = $chain AND ic.address_id = i.address_id
               WHERE i.chain = $chain GROUP BY ALL),
           outs AS (
               SELECT o.tx_id, coalesce(oc.cluster_id, o.address_id) AS dst, sum(o.value) AS w
               FROM tx_outputs o JOIN txs USING (tx_id)
               LEFT JOIN clusters oc ON oc.chain = $chain AND oc.address_id = o.address_id
               WHERE o.chain = $chain AND o.address_id IS NOT NULL GROUP BY ALL),
           pairs AS (
               SELECT tx_id, src, dst, w, (w::HUGEINT * v) // total AS q, (w::HUGEINT * v) % total AS r
               FROM outs JOIN ins USING (tx_id) JOIN txs USING (tx_id)),
           ranked AS (
               SELECT *, row_number() OVER (PARTITION BY tx_id, dst ORDER BY r DESC, src = -1, src) AS rk,
                      w - sum(q) OVER (PARTITION BY tx_id, dst) AS spare
               FROM pairs)
           SELECT src, dst, tx_id, q + (CASE WHEN rk <= spare THEN 1 ELSE 0 END) AS amount FROM ranked
           WHERE src <> dst AND src <> -1 AND q + (CASE WHEN rk <= spare THEN 1 ELSE 0 END) > 0""",
        {"chain": chain},
    )


def _account_txflow(con: duckdb.DuckDBPyConnection, chain: str, asset_id: int) -> None:
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ft_txflow AS
            SELECT coalesce(fc.cluster_id, t.from_id) AS src, coalesce(tc.cluster_id, t.to_id) AS dst,
                   t.tx_id, sum(t.amount) AS amount
            FROM transfers t
            LEFT JOIN clusters fc ON fc.chain = $chain AND fc.address_id = t.from_id
            LEFT JOIN clusters tc ON tc.chain = $chain AND tc.address_id = t.to_id
            WHERE t.chain = $chain AND t.asset_id = $asset AND t.kind <> 'fee'
            GROUP BY ALL
            HAVING src <> dst AND sum(t.amount) > 0::BIGNUM""",
        {"chain": chain, "asset": asset_id},
    )


def carriers(con: duckdb.DuckDBPyConnection, chain: str) -> tuple[I64, list[str], I64]:
    """The clusters carrying a category on ``chain``: (cluster id, category index) pairs over the sorted
    categories present. Every label counts, cluster definer or not (docs/screening.md, "Exposure")."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ft_carriers AS
           SELECT DISTINCT coalesce(c.cluster_id, a.address_id) AS cluster_id, l.category
           FROM labels l JOIN addresses a ON a.chain = l.chain AND a.key = l.key
           LEFT JOIN clusters c ON c.chain = a.chain AND c.address_id = a.address_id
           WHERE l.chain = ?""",
        [chain],
    )
    t = arrow(con, "SELECT cluster_id, category FROM _ft_carriers ORDER BY category, cluster_id")
    cats = t.column("category").to_pylist()
    names = sorted(set(cats))
    index = {c: i for i, c in enumerate(names)}
    ids = t.column("cluster_id").to_numpy().astype(np.int64)
    return ids, names, np.array([index[c] for c in cats], dtype=np.int64)


def touched(con: duckdb.DuckDBPyConnection, chain: str, family: str, asset_id: int, after: int) -> I64:
    """Clusters of the addresses in transactions above ``after`` (for account chains also every
    transfer without a transaction id: a partial export, always taken up again)."""
    if family == "bitcoin":
        sql = """SELECT DISTINCT coalesce(c.cluster_id, x.address_id) FROM (
                     SELECT address_id FROM tx_inputs WHERE chain = $chain AND tx_id > $after
                     UNION ALL SELECT address_id FROM tx_outputs WHERE chain = $chain AND tx_id > $after) x
                 LEFT JOIN clusters c ON c.chain = $chain AND c.address_id = x.address_id
                 WHERE x.address_id IS NOT NULL"""
        params: dict[str, object] = {"chain": chain, "after": after}
    else:
        sql = """SELECT DISTINCT coalesce(c.cluster_id, x.a) FROM (
                     SELECT unnest([from_id, to_id]) AS a FROM transfers
                     WHERE chain = $chain AND asset_id = $asset AND kind <> 'fee'
                       AND (tx_id > $after OR tx_id IS NULL)) x
                 LEFT JOIN clusters c ON c.chain = $chain AND c.address_id = x.a"""
        params = {"chain": chain, "after": after, "asset": asset_id}
    t = arrow(con, sql, params)
    return np.asarray(t.column(0).to_numpy(), dtype=np.int64)


def drop(con: duckdb.DuckDBPyConnection) -> None:
    for name in ("_ft_txflow", "_ft_edges", "_ft_carriers", "_ft_txlists"):
        con.execute(f"DROP TABLE IF EXISTS {name}")

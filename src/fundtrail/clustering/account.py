"""Clustering heuristics for account chains (EVM chains, TRON): candidate links between addresses, each
with the transaction that is its evidence (:class:`~fundtrail.clustering.links.Links`).

Three heuristics, all set-based SQL over the store's ``transfers`` (DuckDB), documented in
docs/heuristics/account.md:

- :func:`deposit_address_links` (``deposit_address``, on by default): an address that forwards what it
  received to a known exchange hot wallet is that exchange's deposit address (Victor 2020, sec. 4.1).
- :func:`same_funder_links` (``same_funder``, opt-in): fresh addresses funded with gas by the same
  funder in one burst, whose first own transactions are alike (the "common funder" pattern of Sybil
  hunting in airdrop distributions).
- :func:`airdrop_collector_links` (``airdrop_collector``, opt-in): addresses that forward the same
  airdropped token to one collector (Victor 2020, sec. 4.2, "multiple airdrop participation").

Incremental equals full. Every heuristic takes ``after_tx_id = W`` (the highest transaction id already
clustered; -1 for a full run) and returns every link whose evidence involves a transfer or transaction
with ``tx_id > W``, plus, where a link depends on a group reaching a size, every link of each group a new
transfer touches. Every condition is *monotone*: more stored data can only add links, never withdraw
one (no "the latest", "the first", "nothing else"), and nothing depends on data that may arrive later
in a different order (a contract is told by the forwarding transaction's own signer, not by the
absence of a creation record). So applying the links of block batches one by one, in any order of
arrival, gives the partition one full run gives; tests/test_cluster_account.py checks it.

Amounts are compared exactly: BIGNUM is compared and subtracted, never multiplied, in SQL.
Transfers without a stored transaction (partial exports) are not evidence: they have no tx_id to cite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import count

import duckdb
import numpy as np
import pyarrow as pa

from fundtrail.chains.assets import NATIVE
from fundtrail.clustering.links import I64, Links
from fundtrail.errors import InvalidInput


@dataclass(frozen=True)
class Heuristic:
    """A heuristic's name (as stored in ``cluster_evidence.heuristic``), its source and a confidence."""

    name: str
    reference: str
    confidence: str  # "high", "medium" or "low": how often the published evaluations found it right
    default_on: bool


DEPOSIT_ADDRESS = Heuristic(
    "deposit_address",
    "F. Victor, Address clustering heuristics for Ethereum, Financial Cryptography 2020, LNCS 12059, "
    "sec. 4.1 (deposit address reuse), doi:10.1007/978-3-030-51280-4_33",
    "high",
    True,
)
SAME_FUNDER = Heuristic(
    "same_funder",
    "common-funder Sybil detection of airdrop distributions (Hop Protocol and Arbitrum Sybil hunting, "
    "2022-2023; LayerZero Sybil reports, 2024): one funder sends gas to many fresh addresses that then "
    "act alike",
    "medium",
    False,
)
AIRDROP_COLLECTOR = Heuristic(
    "airdrop_collector",
    "F. Victor, Address clustering heuristics for Ethereum, Financial Cryptography 2020, LNCS 12059, "
    "sec. 4.2 (multiple airdrop participation), doi:10.1007/978-3-030-51280-4_33",
    "medium",
    False,
)
HEURISTICS = {h.name: h for h in (DEPOSIT_ADDRESS, SAME_FUNDER, AIRDROP_COLLECTOR)}

# -- deposit_address ---------------------------------------------------------------------------------------
DEPOSIT_MAX_DELAY_S = 43_200  # forwarding at most 12 h after the receipt (Victor: t_max = 3,200 blocks)
DEPOSIT_MAX_LOSS_COINS = (1, 100)  # native coin kept back for the fee: 0.01 coin (Victor: a_max = 0.01 ETH)
DEPOSIT_MAX_TOKEN_LOSS = 0  # token base units: a token forwarding pays its fee in the native coin

# -- same_funder -------------------------------------------------------------------------------------------
FUNDER_MAX_GAP_S = 600  # fundings of one burst: each at most 10 min after the previous one (0: one tx)
FUNDER_MAX_FIRST_TX_DELAY_S = 86_400  # a funded address sends its first transaction within one day
FUNDER_MIN_GROUP = 3  # distinct fresh addresses in a burst, below which nothing is linked

# -- airdrop_collector -------------------------------------------------------------------------------------
AIRDROP_MIN_RECIPIENTS = 1_000  # distinct recipients of one (token, distributor, amount) (Victor: 1,000)
AIRDROP_MIN_AGGREGATIONS = 2  # distinct recipients forwarding it to one collector (Victor: 2)

_names = count()


@contextmanager
def _ids_relation(con: duckdb.DuckDBPyConnection, ids: I64 | None) -> Iterator[str]:
    """``ids`` registered as a one-column relation ``id`` under a fresh name for the query's duration."""
    name = f"_account_ids_{next(_names)}"
    values = np.zeros(0, np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    con.register(name, pa.table({"id": pa.array(np.unique(values), pa.int64())}))
    try:
        yield name
    finally:
        con.unregister(name)


def _native_asset(con: duckdb.DuckDBPyConnection, chain: str) -> int | None:
    rows = con.execute("SELECT asset_id FROM assets WHERE chain = ? AND contract IS NULL", [chain]).fetchall()
    return int(rows[0][0]) if rows else None


def _links(name: str, rows: pa.Table) -> Links:
    """Links from a result with columns a, b, tx_id (sorted, so a run's answer is reproducible)."""
    if rows.num_rows == 0:
        return Links.empty(name)
    a, b, t = (rows[c].to_numpy().astype(np.int64) for c in ("a", "b", "tx_id"))
    order = np.lexsort((t, b, a))
    return Links(name, a[order], b[order], t[order])


def _check_chain(chain: str) -> None:
    if chain not in NATIVE:
        raise InvalidInput(f"{chain!r} is not an account chain", f"use one of {', '.join(NATIVE)}")


# Value-moving transfers with their transaction's signer, position and block time and height.
_XFERS = """
    SELECT t.tx_id, t.kind, t.asset_id, t.from_id, t.to_id, t.amount, x.from_id AS signer,
           x.position AS pos, b.height, b.time
    FROM transfers t
    JOIN account_txs x ON x.chain = t.chain AND x.tx_id = t.tx_id
    JOIN blocks b ON b.chain = t.chain AND b.block_id = t.block_id
    WHERE t.chain = $chain AND t.kind IN ('native', 'internal', 'token') AND x.status IS DISTINCT FROM FALSE
"""
_BEFORE = "({a}.height < {b}.height OR ({a}.height = {b}.height AND {a}.pos < {b}.pos))"


def deposit_address_links(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    exchange_ids: I64,
    after_tx_id: int = -1,
    max_delay_s: int = DEPOSIT_MAX_DELAY_S,
    max_loss: int | None = None,
    max_token_loss: int = DEPOSIT_MAX_TOKEN_LOSS,
) -> Links:
    """Deposit addresses of known exchanges (Victor 2020, sec. 4.1): an address D that forwards what it
    received to an exchange hot wallet H (an id of ``exchange_ids``) is linked with H; the evidence is
    the forwarding transaction (the earliest by tx id, per pair and run). D's senders are not linked.

    A forwarding is a transfer D -> H of an asset (native coin or one token) that:

    - D signed itself (D is the sender of the forwarding transaction: an externally owned account, not
      a contract; a contract's sweep is an internal transfer and is not taken),
    - follows, in chain order and at most ``max_delay_s`` seconds (block time) later, a transfer of the
      same asset to D (from anyone but by a transaction other than the forwarding one),
    - of an amount ``received - forwarded`` between 0 and ``max_loss`` (native coin, base units; None:
      0.01 coin, Victor's a_max) or ``max_token_loss`` (token base units, default 0: exact).

    D must not be an exchange id itself (a transfer between two hot wallets says nothing). Failed
    transactions move nothing and are not evidence. ``after_tx_id``: only pairs (receipt, forwarding)
    with at least one transfer of a transaction above it (incremental; -1: all).
    """
    _check_chain(chain)
    if max_delay_s < 0 or max_token_loss < 0 or (max_loss is not None and max_loss < 0):
        raise InvalidInput("max_delay_s, max_loss and max_token_loss must be >= 0", "pass a value >= 0")
    native = _native_asset(con, chain)
    if native is None or len(exchange_ids) == 0:
        return Links.empty(DEPOSIT_ADDRESS.name)
    decimals = NATIVE[chain].decimals or 0
    if max_loss is None:
        num, den = DEPOSIT_MAX_LOSS_COINS
        max_loss = num * 10**decimals // den
    with _ids_relation(con, exchange_ids) as ex:
        rows = con.sql(
            f"""
            WITH x AS ({_XFERS}),
            fwd AS (
                SELECT x.* FROM x
                WHERE x.kind IN ('native', 'token') AND x.signer = x.from_id
                  AND x.to_id IN (SELECT id FROM {ex}) AND x.from_id NOT IN (SELECT id FROM {ex})),
            inc AS (SELECT x.* FROM x WHERE x.to_id IN (SELECT DISTINCT from_id FROM fwd)),
            pair AS (
                SELECT f.from_id AS a, f.to_id AS b, f.tx_id
                FROM fwd f JOIN inc i ON i.to_id = f.from_id AND i.asset_id = f.asset_id
                WHERE (f.tx_id > $w OR i.tx_id > $w) AND i.tx_id <> f.tx_id AND {_BEFORE.format(a="i", b="f")}
                  AND f.time - i.time <= $delay AND i.amount >= f.amount
                  AND i.amount - f.amount <= (CASE WHEN f.asset_id = $native THEN $loss ELSE $token_loss END)
                                             ::VARCHAR::BIGNUM)
            SELECT a, b, min(tx_id) AS tx_id FROM pair GROUP BY a, b
            """,
            params={
                "chain": chain,
                "w": after_tx_id,
                "delay": max_delay_s,
                "native": native,
                "loss": str(max_loss),
                "token_loss": str(max_token_loss),
            },
        ).to_arrow_table()
    return _links(DEPOSIT_ADDRESS.name, rows)


def same_funder_links(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    excluded_funder_ids: I64 | None = None,
    after_tx_id: int = -1,
    max_gap_s: int = FUNDER_MAX_GAP_S,
    max_first_tx_delay_s: int = FUNDER_MAX_FIRST_TX_DELAY_S,
    min_group: int = FUNDER_MIN_GROUP,
) -> Links:
    """Fresh addresses funded by one funder in one burst that then act alike (opt-in; Sybil pattern).

    A *member* is a fresh address X with a *gas funding*: a native-coin transfer (top-level or internal:
    a disperse contract) to X, in a transaction signed by the funder F, received before X's first own
    transaction (nonce 0: the chain says it is X's first, whatever the store holds) and at most
    ``max_first_tx_delay_s`` seconds before it. Members *act alike* when their first transactions call
    the same address with the same method selector (or send plain value to the same address). For one
    funder and one such first action, fundings sorted by block time form *bursts*: each at most
    ``max_gap_s`` seconds after the previous one (0: the same block). A burst of at least ``min_group``
    distinct addresses is one entity: its members are linked in a chain (consecutive pairs), each link's
    evidence being the later member's funding transaction. The funder itself is not linked.

    False positives this guards against: exchanges, bridges and payment processors fund many unrelated
    fresh addresses (withdrawals): pass their ids as ``excluded_funder_ids`` (checked against the
    funding transaction's signer and the transfer's sender). Remaining: a person funding friends who
    all start with the same popular call (a token approval) in the same burst.

    Needs transaction nonces (EVM chains); where nonces are not stored (TRON) nothing is found.
    ``after_tx_id``: every link of each burst that holds a funding or first transaction above it.
    """
    _check_chain(chain)
    if max_gap_s < 0 or max_first_tx_delay_s < 0 or min_group < 2:
        raise InvalidInput("max_gap_s, max_first_tx_delay_s must be >= 0, min_group >= 2", "fix the value")
    native = _native_asset(con, chain)
    if native is None:
        return Links.empty(SAME_FUNDER.name)
    with _ids_relation(con, excluded_funder_ids) as ex:
        rows = con.sql(
            f"""
            WITH first_tx AS (
                SELECT a.from_id AS x, a.tx_id, a.to_id AS target, coalesce(a.method, ''::BLOB) AS method,
                       a.position AS pos, b.height, b.time
                FROM account_txs a JOIN blocks b ON b.chain = a.chain AND b.block_id = a.block_id
                WHERE a.chain = $chain AND a.nonce = 0 AND a.to_id IS NOT NULL),
            fund AS (
                SELECT x.* FROM ({_XFERS}) x
                WHERE x.asset_id = $native AND x.kind IN ('native', 'internal')
                  AND x.to_id IN (SELECT x FROM first_tx)
                  AND x.signer NOT IN (SELECT id FROM {ex}) AND x.from_id NOT IN (SELECT id FROM {ex})),
            member AS (
                SELECT f.signer AS funder, q.target, q.method, q.x, f.tx_id AS fund_tx, q.tx_id AS first_tx,
                       f.time, f.height, f.pos
                FROM fund f JOIN first_tx q ON q.x = f.to_id
                WHERE {_BEFORE.format(a="f", b="q")} AND q.time - f.time <= $delay AND f.signer <> q.x),
            touched AS (
                SELECT DISTINCT funder, target, method FROM member WHERE fund_tx > $w OR first_tx > $w),
            ordered AS (
                SELECT m.*, lag(m.time) OVER k AS prev_time, lag(m.x) OVER k AS prev_x
                FROM member m JOIN touched USING (funder, target, method)
                WINDOW k AS (PARTITION BY funder, target, method ORDER BY time, height, pos, x, fund_tx)),
            burst AS (
                SELECT *, sum(CASE WHEN time - prev_time > $gap THEN 1 ELSE 0 END) OVER (
                    PARTITION BY funder, target, method ORDER BY time, height, pos, x, fund_tx
                    ROWS UNBOUNDED PRECEDING) AS burst
                FROM ordered),
            sized AS (
                SELECT *, count(DISTINCT x) OVER g AS size,
                       bool_or(fund_tx > $w OR first_tx > $w) OVER g AS fresh,
                       row_number() OVER (g ORDER BY time, height, pos, x, fund_tx) AS k
                FROM burst
                WINDOW g AS (PARTITION BY funder, target, method, burst))
            SELECT DISTINCT prev_x AS a, x AS b, fund_tx AS tx_id FROM sized
            WHERE size >= $min_group AND fresh AND k > 1 AND prev_x <> x
            """,
            params={
                "chain": chain,
                "w": after_tx_id,
                "native": native,
                "delay": max_first_tx_delay_s,
                "gap": max_gap_s,
                "min_group": min_group,
            },
        ).to_arrow_table()
    return _links(SAME_FUNDER.name, rows)


def airdrop_collector_links(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    excluded_collector_ids: I64 | None = None,
    after_tx_id: int = -1,
    min_recipients: int = AIRDROP_MIN_RECIPIENTS,
    min_aggregations: int = AIRDROP_MIN_AGGREGATIONS,
) -> Links:
    """Multiple airdrop participation (Victor 2020, sec. 4.2; opt-in): addresses that each forward the
    same airdropped token to one collector are, with the collector, one entity.

    An *airdrop* is a token, a distributor and an amount (base units) the distributor sent to at least
    ``min_recipients`` distinct addresses. A recipient R *forwards* it when, after receiving it (chain
    order), R itself signs a transfer of exactly that amount of that token to a collector C (C not the
    distributor, not R, not in ``excluded_collector_ids``: pass exchanges' hot wallets, where unrelated
    participants sell). When at least ``min_aggregations`` distinct recipients of one airdrop forward it
    to C, each of them is linked with C; the evidence is the forwarding transaction.

    Victor also asks the airdrop's transfers to follow each other closely (median gap <= 2 blocks);
    that condition is not monotone (a late transfer changes a median) and is left out: the recipient
    count and the exact amount carry the signature. ``after_tx_id``: every link of each airdrop (token,
    distributor, amount) that a token transfer above it belongs to, as airdrop or as forwarding.
    """
    _check_chain(chain)
    if min_recipients < 1 or min_aggregations < 1:
        raise InvalidInput("min_recipients and min_aggregations must be >= 1", "pass a value >= 1")
    with _ids_relation(con, excluded_collector_ids) as ex:
        rows = con.sql(
            f"""
            WITH tok AS (SELECT x.* FROM ({_XFERS}) x WHERE x.kind = 'token' AND x.from_id <> x.to_id),
            touched AS (
                SELECT asset_id, from_id AS src, amount FROM tok WHERE tx_id > $w
                UNION
                SELECT d.asset_id, d.from_id, d.amount FROM tok f
                JOIN tok d ON d.to_id = f.from_id AND d.asset_id = f.asset_id AND d.amount = f.amount
                WHERE f.tx_id > $w),
            dropped AS (
                SELECT d.* FROM tok d
                JOIN touched t ON t.asset_id = d.asset_id AND t.src = d.from_id AND t.amount = d.amount),
            airdrop AS (
                SELECT asset_id, from_id AS src, amount FROM dropped
                GROUP BY asset_id, from_id, amount HAVING count(DISTINCT to_id) >= $min_recipients),
            pair AS (
                SELECT d.asset_id, d.from_id AS src, d.amount, d.to_id AS r, f.to_id AS c, f.tx_id
                FROM dropped d
                JOIN airdrop s ON s.asset_id = d.asset_id AND s.src = d.from_id AND s.amount = d.amount
                JOIN tok f ON f.from_id = d.to_id AND f.asset_id = d.asset_id AND f.amount = d.amount
                WHERE f.signer = f.from_id AND f.to_id <> d.from_id AND {_BEFORE.format(a="d", b="f")}
                  AND f.to_id NOT IN (SELECT id FROM {ex})),
            collector AS (
                SELECT asset_id, src, amount, c FROM pair
                GROUP BY asset_id, src, amount, c HAVING count(DISTINCT r) >= $min_aggregations)
            SELECT p.r AS a, p.c AS b, min(p.tx_id) AS tx_id
            FROM pair p JOIN collector k USING (asset_id, src, amount, c)
            GROUP BY p.r, p.c
            """,
            params={
                "chain": chain,
                "w": after_tx_id,
                "min_recipients": min_recipients,
                "min_aggregations": min_aggregations,
            },
        ).to_arrow_table()
    return _links(AIRDROP_COLLECTOR.name, rows)

"""Screening latency and throughput on a generated store of more than a million clusters.

The store is generated directly into the tables with DuckDB (no blocks to decode): 1.5 million Bitcoin
addresses (P2PKH keys), 400,000 of them in 100,000 clusters of four, the rest alone (1.2 million
clusters); 12,000 labels (sanctioned, mixer, darknet market, scam, exchange); exposure rows for 10% of
the clusters (one or two categories each, direct and indirect, with evidence of three transactions) and
totals for every cluster; 200,000 transactions for the evidence txids.

Measured in the same run:

* ``screen_single``: p99 latency of ``Screener.screen_address`` (the library call: parse, look up,
  evaluate the policy, build the JSON answer) over a sample of addresses (10% exposed, some labelled,
  some never seen); target <= 5 ms. Reference: a naive per-address SQL query over the raw tables
  (address -> cluster -> labels and exposure), same sample.
* ``screen_batch``: addresses per second through ``Screener.screen_many`` (chunks of 10,000, one
  vectorised lookup per chunk); target >= 50,000/s. Reference: the naive query, one per address.

``run()`` returns ``{"results": [line, line], "setup": {...}}``, each line
``{"name", "ours", "reference", "ratio", "unit", "target", "met", ...}``.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fundtrail.chains.bitcoin.address import key_to_address, parse_address
from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.screening.screen import Screener
from fundtrail.store.db import connect

N_ADDRESSES = 1_500_000
CLUSTERED = 400_000  # addresses in clusters of CLUSTER_SIZE
CLUSTER_SIZE = 4
N_TXS = 200_000
EXPOSED_EVERY = 10  # one cluster in ten has exposure rows
SINGLE_TARGET_MS = 5.0
BATCH_TARGET = 50_000.0
NAIVE_SQL = """
SELECT a.address_id, coalesce(c.cluster_id, a.address_id) AS cid,
       (SELECT list(l.category) FROM labels l WHERE l.chain = a.chain AND l.key = a.key) AS own,
       (SELECT list(l.category) FROM clusters m
          JOIN addresses b ON b.chain = m.chain AND b.address_id = m.address_id
          JOIN labels l ON l.chain = b.chain AND l.key = b.key
          WHERE m.chain = a.chain AND m.cluster_id = coalesce(c.cluster_id, a.address_id)) AS cluster_labels,
       (SELECT list((e.scope, e.direction, e.category, e.amount, e.share)) FROM exposure e
          WHERE e.chain = a.chain AND e.asset_id = -1
            AND e.cluster_id = coalesce(c.cluster_id, a.address_id)) AS exposure,
       (SELECT list((v.category, v.tx_ids)) FROM exposure_evidence v
          WHERE v.chain = a.chain AND v.asset_id = -1
            AND v.cluster_id = coalesce(c.cluster_id, a.address_id)) AS evidence
FROM addresses a LEFT JOIN clusters c ON c.chain = a.chain AND c.address_id = a.address_id
WHERE a.chain = 'bitcoin' AND a.key = ?
"""


def _key_sql(i: str) -> str:
    return f"from_hex('01' || substr(sha256(({i})::VARCHAR), 1, 40))"


def generate(path: Path, n: int = N_ADDRESSES) -> dict[str, Any]:
    """Write the benchmark store; returns its sizes."""
    t0 = time.perf_counter()
    con = connect(path)
    cid = f"CASE WHEN i < {CLUSTERED} THEN i - i % {CLUSTER_SIZE} ELSE i END"
    con.execute(f"CREATE TEMP TABLE g AS SELECT i, {cid} AS cid FROM range({n}) t(i)")
    con.execute(f"INSERT INTO addresses SELECT 'bitcoin', i, {_key_sql('i')} FROM g")
    con.execute(f"INSERT INTO clusters SELECT 'bitcoin', i, cid FROM g WHERE i < {CLUSTERED}")
    con.execute(
        """INSERT INTO blocks (chain, block_id, hash, height, height_source, prev_hash, time, source,
                               ingested_at)
           VALUES ('bitcoin', 0, from_hex(repeat('ab', 32)), 840000, 'rpc', from_hex(repeat('cd', 32)),
                   1713571767, 'bench', now())"""
    )
    con.execute(
        f"""INSERT INTO transactions (chain, tx_id, block_id, position, txid, wtxid, version, locktime, size,
                                     weight, is_coinbase, input_count, output_count, input_value,
                                     output_value, fee)
            SELECT 'bitcoin', t, 0, t, from_hex(sha256('tx' || t)), from_hex(sha256('tx' || t)), 2, 0, 250,
                   1000, false, 1, 2, 100000, 99000, 1000 FROM range({N_TXS}) r(t)"""
    )
    cats = ["sanctioned", "mixer", "darknet_market", "scam", "exchange"]
    label_key = _key_sql("a")
    con.execute(
        f"""INSERT INTO labels SELECT row_number() OVER (), 'bench', 'bitcoin', 'x', {label_key},
                'label ' || a, {cats}[(1 + a % 5)::BIGINT], 80, NULL, NULL, a % 5 = 4, NULL, now(), now()
            FROM (SELECT (hash(s) % {n})::BIGINT AS a FROM range(12000) r(s))"""
    )
    # exposure: every EXPOSED_EVERY-th cluster, one or two categories, direct (and indirect for some)
    con.execute(
        f"""CREATE TEMP TABLE ex AS SELECT DISTINCT cid FROM g WHERE hash(cid) % {EXPOSED_EVERY} = 0"""
    )
    con.execute(
        f"""INSERT INTO exposure
            SELECT 'bitcoin', -1, cid, scope, 'received', c, amount, share, hops FROM (
              SELECT cid, 'direct' AS scope, {cats}[(1 + hash(cid) % 4)::BIGINT] AS c,
                     (1 + hash(cid) % 1000) * 100000 AS amount, (1 + hash(cid) % 100) / 100.0 AS share,
                     1 AS hops FROM ex
              UNION ALL
              SELECT cid, 'indirect', {cats}[(1 + hash(cid + 1) % 4)::BIGINT], 50000 * (1 + hash(cid) % 7),
                     (1 + hash(cid + 7) % 50) / 100.0, 2 FROM ex WHERE hash(cid) % 3 = 0)"""
    )
    con.execute(
        """INSERT INTO exposure_evidence
           SELECT chain, asset_id, cluster_id, scope, direction, category, cluster_id + 1, amount, hops,
                  [hash(cluster_id) % 200000, hash(cluster_id + 1) % 200000, hash(cluster_id + 2) % 200000]
           FROM exposure"""
    )
    con.execute(
        "INSERT INTO exposure_totals SELECT DISTINCT 'bitcoin', -1, cid, 1000000000, 900000000 FROM g"
    )
    con.execute(
        """INSERT INTO exposure_state VALUES ('bitcoin', -1, '{"hops": 3}', 0, 'bench', 'bench', now())"""
    )
    sizes = {
        "addresses": n,
        "clusters": int(con.execute("SELECT count(DISTINCT cid) FROM g").fetchall()[0][0]),
        "exposed_clusters": int(con.execute("SELECT count(*) FROM ex").fetchall()[0][0]),
        "exposure_rows": int(con.execute("SELECT count(*) FROM exposure").fetchall()[0][0]),
        "labels": int(con.execute("SELECT count(*) FROM labels").fetchall()[0][0]),
    }
    con.close()
    sizes["generate_s"] = round(time.perf_counter() - t0, 2)
    return sizes


def _sample(path: Path, count: int, seed: int = 7) -> list[str]:
    """Addresses to screen: mostly random stored ones, 10% from exposed clusters, 1% never seen."""
    con = connect(path, read_only=True)
    try:
        rng = random.Random(seed)
        n = int(con.execute("SELECT count(*) FROM addresses").fetchall()[0][0])
        exposed = [
            int(r[0])
            for r in con.execute(
                "SELECT DISTINCT cluster_id FROM exposure ORDER BY hash(cluster_id) LIMIT ?", [count]
            ).fetchall()
        ]
        ids = [rng.randrange(n) for _ in range(count)]
        for j in range(0, count, 10):
            ids[j] = exposed[j % len(exposed)]
        keys = {
            int(i): bytes(k)
            for i, k in con.execute(
                "SELECT address_id, key FROM addresses WHERE address_id IN (SELECT unnest(?))", [ids]
            ).fetchall()
        }
    finally:
        con.close()
    out = [key_to_address(keys[i], MAINNET) for i in ids]
    for j in range(0, count, 100):  # never seen
        out[j] = key_to_address(b"\x01" + rng.randbytes(20), MAINNET)
    return out


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def run(quick: bool = False) -> dict[str, Any]:
    n_single = 1_000 if quick else 5_000
    n_batch = 50_000 if quick else 200_000
    n_naive = 100 if quick else 300
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "screen.duckdb"
        setup = generate(path)
        single_items = _sample(path, n_single, seed=1)
        batch_items = _sample(path, n_batch, seed=2)
        con = connect(path, read_only=True)
        try:
            t0 = time.perf_counter()
            s = Screener(con)
            s.view("bitcoin")
            setup["screener_load_s"] = round(time.perf_counter() - t0, 3)
            lat: list[float] = []
            for a in single_items:
                t = time.perf_counter()
                s.screen_address("bitcoin", a)
                lat.append(time.perf_counter() - t)
            s.refresh()
            s.view("bitcoin")  # a fresh cache: the batch does not reuse the single calls' clusters
            t0 = time.perf_counter()
            done = sum(1 for _ in s.screen_many(batch_items, "bitcoin"))
            batch_s = time.perf_counter() - t0
            naive: list[float] = []
            for a in single_items[:n_naive]:
                key = parse_address(a, MAINNET)
                t = time.perf_counter()
                con.execute(NAIVE_SQL, [key]).fetchall()
                naive.append(time.perf_counter() - t)
        finally:
            con.close()
    ours_p99 = _p99(lat) * 1e3
    ref_p99 = _p99(naive) * 1e3
    rate = done / batch_s
    ref_rate = len(naive) / sum(naive)
    single = {
        "name": "screen_single_p99",
        "ours": round(ours_p99, 3),
        "reference": round(ref_p99, 3),
        "ratio": round(ref_p99 / ours_p99, 1),
        "unit": "ms",
        "reference_name": "naive per-address SQL over the raw tables (DuckDB)",
        "target": SINGLE_TARGET_MS,
        "met": ours_p99 <= SINGLE_TARGET_MS,
        "p50_ms": round(statistics.median(lat) * 1e3, 3),
        "samples": len(lat),
    }
    batch = {
        "name": "screen_batch_rate",
        "ours": round(rate),
        "reference": round(ref_rate),
        "ratio": round(rate / ref_rate, 1),
        "unit": "addresses/s",
        "reference_name": "naive per-address SQL over the raw tables (DuckDB), one query per address",
        "target": BATCH_TARGET,
        "met": rate >= BATCH_TARGET,
        "items": done,
        "seconds": round(batch_s, 3),
    }
    return {"results": [single, batch], "setup": setup}


if __name__ == "__main__":
    import json
    import sys

    res = run(quick="--quick" in sys.argv)
    for line in res["results"]:
        print(json.dumps({**line, "setup": res["setup"]}))

"""The store-backed :class:`~fundtrail.detection.base.DetectContext`: what detectors read, loaded once per
chain and run, in bulk (a UTXO view, the account transfers, labels, clusters), shared by every detector
of the run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.chains.registry import chain as get_chain
from fundtrail.detection.prices import DEFAULT_PRICES_USD, usd
from fundtrail.store.db import scalar
from fundtrail.store.utxo_view import UtxoView, load_view

# label categories a detector treats as services or risk (most specific first: a sanctioned exchange is
# sanctioned); the rest of the taxonomy (merchant, miner, other ...) is not reported as a category here
RISK_ORDER = (
    "sanctioned",
    "terrorist_financing",
    "child_abuse_material",
    "ransomware",
    "darknet_market",
    "hack",
    "stolen_funds",
    "scam",
    "phishing",
    "mixer",
    "gambling",
    "bridge",
    "exchange",
    "defi",
    "payment_processor",
    "miner",
    "merchant",
)
HUGEINT_MAX = 2**127 - 1


class StoreContext:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        chain: str,
        since_height: int = 0,
        params: Mapping[str, Any] | None = None,
        prices: Mapping[str, float] | None = None,
    ) -> None:
        self.con = con
        self.chain = chain
        self._chain = get_chain(chain)
        self.family = self._chain.family
        self.since_height = since_height
        self.params: Mapping[str, Any] = params or {}
        self.prices = prices or DEFAULT_PRICES_USD
        self._texts: dict[int, str] = {}

    def with_params(self, params: Mapping[str, Any]) -> StoreContext:
        """The same loaded data for another detector's parameters."""
        other = object.__new__(StoreContext)
        other.__dict__.update(self.__dict__)
        other.params = params
        return other

    # bulk data ------------------------------------------------------------------------------------------
    def utxo_view(self) -> UtxoView:
        return self._view

    @cached_property
    def _view(self) -> UtxoView:
        return load_view(self.con, self.chain)

    def transfers(self) -> pa.Table:
        return self._transfers

    @cached_property
    def _transfers(self) -> pa.Table:
        """Every transfer of the chain in chain order, amounts exact (decimal128(38, 0); larger amounts,
        which no real asset has, are clamped to 2^127 - 1)."""
        table: pa.Table = self.con.sql(
            f"""SELECT t.tx_id, '0x' || lower(hex(t.tx_hash)) AS tx_hash, b.height, b.time,
                      coalesce(x.position, -1) AS position, t.kind,
                      coalesce(s.symbol, 'asset:' || t.asset_id::VARCHAR) AS asset, s.decimals,
                      t.asset_id, t.from_id, t.to_id,
                      least(t.amount, {HUGEINT_MAX}::BIGNUM)::VARCHAR::HUGEINT AS amount
               FROM transfers t JOIN blocks b ON b.block_id = t.block_id
               LEFT JOIN account_txs x ON x.tx_id = t.tx_id
               LEFT JOIN assets s ON s.asset_id = t.asset_id
               WHERE t.chain = $chain AND t.kind <> 'fee'
               ORDER BY b.height, position, t.log_index NULLS FIRST, t.tx_id""",
            params={"chain": self.chain},
        ).to_arrow_table()
        return table

    # addresses --------------------------------------------------------------------------------------------
    def address_text(self, address_id: int) -> str:
        t = self._texts.get(address_id)
        if t is None:
            self.address_texts([address_id])
            t = self._texts.get(address_id, f"(address {address_id})")
        return t

    def address_texts(self, ids: Iterable[int]) -> list[str]:
        want = [int(i) for i in ids]
        missing = sorted({i for i in want if i not in self._texts})
        if missing:
            rows = self.con.execute(
                "SELECT address_id, key FROM addresses WHERE chain = ? AND address_id IN (SELECT unnest(?))",
                [self.chain, missing],
            ).fetchall()
            for aid, key in rows:
                self._texts[int(aid)] = self._chain.show(bytes(key))
        return [self._texts.get(i, f"(address {i})") for i in want]

    @cached_property
    def _n_addresses(self) -> int:
        return int(scalar(self.con, "SELECT coalesce(max(address_id), -1) + 1 FROM addresses") or 0)

    @cached_property
    def _clusters(self) -> npt.NDArray[np.int64]:
        arr = np.full(self._n_addresses, -1, dtype=np.int64)
        t = self.con.sql(
            "SELECT address_id, cluster_id FROM clusters WHERE chain = $chain", params={"chain": self.chain}
        ).to_arrow_table()
        if t.num_rows:
            arr[t["address_id"].to_numpy()] = t["cluster_id"].to_numpy()
        return arr

    def cluster_of(self, address_id: int) -> int | None:
        c = int(self._clusters[address_id]) if 0 <= address_id < len(self._clusters) else -1
        return None if c < 0 else c

    def cluster_array(self) -> npt.NDArray[np.int64]:
        """Cluster id per address id (-1: none), for vectorised detectors."""
        return self._clusters

    @cached_property
    def _categories(self) -> dict[int, str]:
        """Address id -> its most specific risk/service category, from its own labels and from the
        definer labels of its cluster."""
        rows = self.con.execute(
            """WITH l AS (SELECT a.address_id, l.category, l.is_cluster_definer FROM labels l
                          JOIN addresses a ON a.chain = l.chain AND a.key = l.key
                          WHERE l.chain = $chain AND l.category IN (SELECT unnest($cats)))
               SELECT address_id, category FROM l
               UNION
               SELECT m.address_id, l.category FROM l
               JOIN clusters c ON c.chain = $chain AND c.address_id = l.address_id
               JOIN clusters m ON m.chain = $chain AND m.cluster_id = c.cluster_id
               WHERE l.is_cluster_definer""",
            {"chain": self.chain, "cats": list(RISK_ORDER)},
        ).fetchall()
        rank = {c: i for i, c in enumerate(RISK_ORDER)}
        out: dict[int, str] = {}
        for aid, cat in rows:
            prev = out.get(int(aid))
            if prev is None or rank[cat] < rank[prev]:
                out[int(aid)] = cat
        return out

    def service_category(self, address_id: int) -> str | None:
        return self._categories.get(address_id)

    def categories(self) -> Mapping[int, str]:
        """Every categorised address id (for vectorised detectors)."""
        return self._categories

    def usd_value(self, asset: str, amount: int) -> float | None:
        return usd(asset, amount, None, self.prices)

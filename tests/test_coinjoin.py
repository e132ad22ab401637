"""CoinJoin detection: the two real transactions GraphSense flags, the real mainnet fixture (false
positives), and per family a minimal constructed case beside its nearest innocent look-alike."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fundtrail.chains.bitcoin import coinjoin as cj
from fundtrail.chains.bitcoin import script as st
from fundtrail.errors import InvalidInput
from fundtrail.store.bitcoin_read import coinjoin_of_tx
from fundtrail.store.utxo_view import TxRow, UtxoView, load_view, view_from_rows, view_from_rpc_json
from tests.conftest import DATA

COINJOIN_JSON = DATA / "graphsense-lib" / "btc_coinjoin_txs"
W, PKH, SH = st.P2WPKH, st.P2PKH, st.P2SH

# What fires on the later mainnet blocks of the fixture (hand-checked; see docs/heuristics/coinjoin.md).
MODERN_HITS = {
    "48fc9600760fd8d75fb45ef5d59f891fcac11d2e8367ff099e5c09dd3254ce39": "joinmarket",
    "e98c7e96e52c9f947434cdb7649f4c5b26af199811646036f5dcdf58f5869040": "joinmarket",
    "ab952d5b56dcab692ddf6cda48e12ca3ac6b542d16fa9a76932c465462df2ca0": "joinmarket",
    "a23570534b8f31f3fd946b3b4e0d54c0f07ef61fe44aa5a7e35f37e4a14ed229": "joinmarket",
    "0e422ad44b7c903ad61e6b65fd06bdd0c82c859582a5cbe39ea10e2bbb5f0f4a": "generic",
    "0e30c8f6a2b4d25a0f7c369ec4286adf7e206b66c8c8050b76e917249fbb03d1": "generic",
    "b91b1db65301cc45b4a1798bb8d50a0c5506b262e61b5676ec60bac811540d87": "generic",
    "e5f488e78b5b1877c04a0a43a338c54f313ff8741e1d200a59c6fe550fe94d5e": "generic",
    "af0c9e8a5e4b8431aa7a2f03a1c1b1d1ccf7b41ec265f55b0c2b8a8cb44e19d7": "generic",
    "344f91f3880815b51e638f69b1ab102813b7247b1dea06ee0ebfbbecc3230154": "generic",
    "b98bc5ae0a395afebff39856bfcaa5b992f5b423360c41fca39115d09ccd2b09": "generic",
    "d852412ea1dbd9d768ac6988e99077f14147940a5ce2c93e60b8ee79ca5264e9": "generic",
    "b738d7410df8d77951e8dcad9999df300c978a312e53197cc95893994a5ca829": "generic",
}


def _family(rows: list[TxRow]) -> str | None:
    view = view_from_rows(rows)
    codes = cj.detect(view)
    one = cj.detect_one(view, 0)
    assert one == (cj.FAMILIES[int(codes[0])] if codes[0] else None)
    return one


# --- real data ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(COINJOIN_JSON.glob("*.json")), ids=lambda p: p.name[:8])
def test_graphsense_coinjoins_are_detected(path: Path) -> None:
    view = view_from_rpc_json(json.loads(path.read_text()))
    assert view.keys and len(view) == 1
    assert (view.in_addr >= 0).all()  # derived from scriptSig: P2PKH and P2SH multisig spends
    assert cj.detect_one(view, 0) == "generic"
    assert int(cj.detect(view)[0]) == cj.GENERIC


def test_rpc_json_is_parsed_strictly() -> None:
    tx = json.loads(next(COINJOIN_JSON.glob("*.json")).read_text())
    with pytest.raises(InvalidInput):
        view_from_rpc_json({**tx, "txid": "00" * 32})
    with pytest.raises(InvalidInput):
        view_from_rpc_json({"vin": []})
    with pytest.raises(InvalidInput):
        view_from_rpc_json("{not json")


def _txids(con: duckdb.DuckDBPyConnection, view: UtxoView, rows: np.ndarray) -> list[str]:
    ids = [int(view.tx_id[i]) for i in rows]
    got = con.execute(
        "SELECT tx_id, lower(hex(txid)) FROM transactions WHERE chain = 'bitcoin' AND tx_id IN "
        f"({','.join(map(str, ids)) or 'NULL'})"
    ).fetchall()
    by_id = dict(got)
    return [by_id[i] for i in ids]


def test_real_store_false_positives(real_con: duckdb.DuckDBPyConnection) -> None:
    view = load_view(real_con, "bitcoin")
    codes = cj.detect(view)
    early_max = real_con.execute(
        "SELECT max(t.tx_id) FROM transactions t JOIN blocks b USING (chain, block_id) "
        "WHERE t.chain = 'bitcoin' AND b.height <= 438"
    ).fetchall()[0][0]
    early = view.tx_id <= early_max
    assert early.sum() > 400 and not codes[early].any()  # no CoinJoin in 2009-2010
    hits = np.flatnonzero(codes)
    found = dict(zip(_txids(real_con, view, hits), (cj.FAMILIES[int(codes[i])] for i in hits)))
    assert found == MODERN_HITS
    assert not cj.whirlpool_tx0(view).any()


def test_coinjoin_of_tx_shape(real_con: duckdb.DuckDBPyConnection) -> None:
    (tid,) = real_con.execute(
        "SELECT tx_id FROM transactions WHERE lower(hex(txid)) = ?",
        ["48fc9600760fd8d75fb45ef5d59f891fcac11d2e8367ff099e5c09dd3254ce39"],
    ).fetchall()[0]
    assert coinjoin_of_tx(real_con, "bitcoin", tid) == {"detected": True, "family": "joinmarket"}
    assert coinjoin_of_tx(real_con, "bitcoin", 0) == {"detected": False, "family": None}


# --- constructed cases -------------------------------------------------------------------------------


def test_wasabi1() -> None:
    ins = [(k, 10_200_000, W) for k in range(12)]
    outs = [(100 + k, 10_000_000, W) for k in range(10)] + [(200, 1_500_000, W), (201, 30_000, W)]
    assert _family([TxRow(ins, outs)]) == "wasabi1"
    # look-alike: an exchange paying ten 0.1 BTC withdrawals to legacy addresses
    legacy = [(a, v, PKH) for a, v, _ in outs]
    assert _family([TxRow(ins, legacy)]) is None


def test_wasabi2() -> None:
    denoms = [int(x) for x in cj.wasabi2_denominations()]
    outs_v = sorted(
        [denoms[20], denoms[18], denoms[18], denoms[15], denoms[12], denoms[10], 123_457], reverse=True
    )
    ins = [(k, 2_000_000 - 10_000 * k, W) for k in range(25)]
    outs = [(100 + k, v, W) for k, v in enumerate(outs_v)]
    assert _family([TxRow(ins, outs)]) == "wasabi2"
    # look-alike: the same amounts in the order a wallet would write them (not sorted by the coordinator)
    assert _family([TxRow(ins, outs[::-1])]) is None


def test_whirlpool() -> None:
    ins = [(0, 1_000_000, W)] + [(k, 1_000_000 + 5_000, W) for k in range(1, 5)]
    outs = [(100 + k, 1_000_000, W) for k in range(5)]
    assert _family([TxRow(ins, outs)]) == "whirlpool"
    # look-alike: five equal outputs that are not a pool denomination
    assert _family([TxRow(ins, [(a, 1_200_000, t) for a, _, t in outs])]) is None
    # Tx0: one owner's entry into the pool, marked apart and not a CoinJoin
    tx0_outs = [(-1, 0, st.NULLDATA)] + [(100 + k, 1_000_170, W) for k in range(5)]
    tx0_outs += [(200, 50_000, W), (201, 2_345_678, W)]
    tx0 = view_from_rows([TxRow([(0, 7_400_000, W)], tx0_outs)])
    assert cj.whirlpool_tx0(tx0).tolist() == [True]
    assert cj.detect(tx0).tolist() == [0]


def test_joinmarket() -> None:
    ins = [(k, 5_900_000, W) for k in range(5)]
    outs = [(100 + k, 5_000_000, W) for k in range(4)] + [(200 + k, 990_000 - 1_000 * k, W) for k in range(3)]
    assert _family([TxRow(ins, outs)]) == "joinmarket"
    # look-alike: a sender paying four equal invoices from two inputs
    assert _family([TxRow(ins[:2], outs)]) is None


def test_generic() -> None:
    ins = [(0, 1_500_000, PKH), (1, 800_000, PKH)]
    outs = [(10, 1_000_000, PKH), (11, 1_000_000, PKH), (12, 290_000, PKH)]
    assert _family([TxRow(ins, outs)]) == "generic"
    # look-alikes: the repeated value is dust, or Counterparty's 5,430 sat, or one input address
    for v in (546, 5_430):
        assert _family([TxRow(ins, [(10, v, PKH), (11, v, PKH), (12, 2_290_000, PKH)])]) is None
    assert _family([TxRow([(0, 1_500_000, PKH), (0, 800_000, PKH)], outs)]) is None


def test_coinbase_is_never_a_coinjoin() -> None:
    outs = [(10, 1_000_000, PKH), (11, 1_000_000, PKH), (12, 290_000, PKH)]
    rows = [TxRow([(-1, -1, -1), (-1, -1, -1)], outs, coinbase=True)]
    assert cj.detect(view_from_rows(rows)).tolist() == [0]
    assert cj.detect_one(view_from_rows(rows), 0) is None

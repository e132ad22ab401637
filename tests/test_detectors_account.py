"""The account-chain detectors (structuring, round_tripping, trade_disguise, chain_hopping, passthrough) on
one constructed USDT ledger: every detector fires on its minimal laundering case and stays silent on the
nearest innocent look-alike, written into the same chain (each test says which look-alike and why it is
the nearest). The ledger goes through the real ethereum-etl export and ingest; labels through the label
store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from fundtrail.chains.assets import SIM_USDT_CONTRACT
from fundtrail.chains.registry import chain
from fundtrail.detection.base import Alert
from fundtrail.detection.context import StoreContext
from fundtrail.detection.detectors import (
    chain_hopping,
    passthrough,
    round_tripping,
    structuring,
    trade_disguise,
)
from fundtrail.errors import InvalidInput
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.labels.store import add_label
from fundtrail.simulate.etl_export import EtlWriter
from fundtrail.store.db import connect

SIM = "sim-ethereum"
USDT = bytes.fromhex(SIM_USDT_CONTRACT)
UNIT = 10**6  # USDT base units
T0 = 1_767_571_200
OLD = T0 - 200 * 86_400  # long-standing addresses are first seen here
MIN, HOUR, DAY = 60, 3_600, 86_400


def addr(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:20]


def text(name: str) -> str:
    return chain(SIM).show(addr(name))


class Ledger:
    """USDT transfers (and mints) by time; written one block per distinct time."""

    def __init__(self) -> None:
        self.events: list[tuple[int, int, str, str, int]] = []  # time, order, from, to, units

    def mint(self, t: int, to: str, usdt: int) -> None:
        self.events.append((t, len(self.events), "", to, usdt * UNIT))

    def pay(self, t: int, frm: str, to: str, usdt: float) -> None:
        self.events.append((t, len(self.events), frm, to, round(usdt * UNIT)))

    def write(self, out: Path) -> EtlWriter:
        w = EtlWriter(out)
        issuer = addr("issuer")
        events = sorted(self.events)
        for i, (t, _, frm, to, units) in enumerate(events):
            if frm:
                w.token(USDT, addr(frm), addr(to), units, 10**9)
            else:
                w.mint(USDT, issuer, addr(to), units, 10**9)
            if i + 1 == len(events) or events[i + 1][0] != t:
                w.seal_block(t)
        w.close()
        return w


def build() -> Ledger:
    g = Ledger()
    for name in ("hot-x", "bridge", "employer", "merchant", "supplier", "vera", "ulla", "wim", "wanda"):
        g.mint(OLD, name, 1_000_000)  # long-standing: first seen 200 days ago
    for v in ("victim-1", "victim-2", "victim-3"):
        g.mint(OLD, v, 20_000)

    def deposit(t: int, frm: str, dep: str, usdt: float) -> None:
        g.pay(t, frm, dep, usdt)
        g.pay(t + 30 * MIN, dep, "hot-x", usdt)  # the exchange sweeps its deposit address

    # structuring: six transfers of 90-100 % of USD 3,000 to six exchange deposits in one hour
    g.mint(T0, "structurer", 20_000)
    for i, usdt in enumerate((2_700, 2_790, 2_850, 2_910, 2_960, 2_990)):
        deposit(T0 + HOUR + i * 10 * MIN, "structurer", f"s-dep-{i}", usdt)
    # look-alike: payroll of six equal salaries in the same band, paid on two pay days 14 days apart
    for day in (0, 14):
        for j in range(6):
            g.pay(T0 + 2 * HOUR + day * DAY + j * MIN, "employer", f"staff-{j}", 2_950)
    # round trip: 20,000 out through three shells and back, 0.5 % kept at each
    g.mint(T0, "origin", 50_000)
    amount = 20_000.0
    for k, (a, b) in enumerate([("origin", "shell-1"), ("shell-1", "shell-2"), ("shell-2", "shell-3")]):
        g.pay(T0 + 3 * HOUR + k * 10 * MIN, a, b, amount)
        amount *= 0.995
    g.pay(T0 + 3 * HOUR + 30 * MIN, "shell-3", "origin", amount)
    # look-alike: the same three-step cycle through an exchange (deposit, sweep, withdrawal back)
    g.pay(T0 + 4 * HOUR, "ulla", "u-dep", 15_000)
    g.pay(T0 + 4 * HOUR + 10 * MIN, "u-dep", "hot-x", 15_000)
    g.pay(T0 + 4 * HOUR + 20 * MIN, "hot-x", "ulla", 14_990)
    # trade disguise: placement, four invoices hourly between two young fronts, cash-out at two deposits
    g.mint(T0 + 5 * HOUR, "placer", 100_000)
    g.pay(T0 + 5 * HOUR + MIN, "placer", "front-1", 60_000)
    for k, usdt in enumerate((10_000, 10_010, 10_000, 9_990)):
        g.pay(T0 + 6 * HOUR + k * HOUR, "front-1", "front-2", usdt)
    deposit(T0 + 11 * HOUR, "front-2", "f-dep-1", 20_000)
    deposit(T0 + 11 * HOUR + 10 * MIN, "front-2", "f-dep-2", 20_000)
    # look-alike: a long-standing merchant paying its supplier the same way (both 200 days old)
    for k, usdt in enumerate((5_000, 5_000, 5_010, 5_000)):
        g.pay(T0 + 6 * HOUR + 5 * MIN + k * HOUR, "merchant", "supplier", usdt)
    deposit(T0 + 11 * HOUR + 20 * MIN, "supplier", "m-dep", 19_000)
    # chain hopping: a bridge payout to a fresh address, one more fresh hop, two exchange deposits
    g.pay(T0 + 12 * HOUR, "bridge", "landing", 30_000)
    g.pay(T0 + 12 * HOUR + 10 * MIN, "landing", "layer-1", 30_000)
    deposit(T0 + 12 * HOUR + 20 * MIN, "layer-1", "h-dep-1", 15_000)
    deposit(T0 + 12 * HOUR + 21 * MIN, "layer-1", "h-dep-2", 15_000)
    # look-alike: a user bridging to her own long-lived address (which pays on the same way)
    g.pay(T0 + 13 * HOUR, "bridge", "vera", 30_000)
    g.pay(T0 + 13 * HOUR + 10 * MIN, "vera", "v-next", 30_000)
    deposit(T0 + 13 * HOUR + 20 * MIN, "v-next", "v-dep", 30_000)
    # pass-through: three victims pay a collection address, emptied to two deposits within the hour
    for k, usdt in enumerate((4_000, 3_000, 5_000)):
        g.pay(T0 + 15 * HOUR + k * 20 * MIN, f"victim-{k + 1}", "collector", usdt)
    deposit(T0 + 15 * HOUR + 50 * MIN, "collector", "c-dep-1", 6_000)
    deposit(T0 + 15 * HOUR + 51 * MIN, "collector", "c-dep-2", 6_000)
    # look-alike: an exchange deposit address collecting from two users, swept by its exchange
    g.pay(T0 + 16 * HOUR, "wim", "w-dep", 4_000)
    g.pay(T0 + 16 * HOUR + 10 * MIN, "wanda", "w-dep", 3_000)
    g.pay(T0 + 16 * HOUR + 40 * MIN, "w-dep", "hot-x", 7_000)
    return g


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("acct-detectors")
    w = build().write(tmp / "export")
    c = connect(tmp / "s.duckdb")
    ingest_ethereum_etl(c, SIM, w.blocks_path, w.transactions_path, token_transfers=w.token_transfers_path)
    add_label(c, SIM, text("hot-x"), "Exchange X", "exchange")
    add_label(c, SIM, text("bridge"), "Bridge", "bridge")
    yield c
    c.close()


def run(con: duckdb.DuckDBPyConnection, module: Any, **params: Any) -> list[Alert]:
    d = module.DETECTOR
    defaults = {p.name: p.default for p in d.params}
    return list(d.run(StoreContext(con, SIM, since_height=0, params={**defaults, **params})))


def naming(alerts: list[Alert], name: str) -> list[Alert]:
    return [a for a in alerts if text(name) in a.addresses]


def test_structuring_fires_under_the_threshold_not_on_payroll(con: duckdb.DuckDBPyConnection) -> None:
    """Fires: six transfers of 2,700-2,990 USDT (90-99.7 % of USD 3,000) to six exchange deposits in an
    hour. Nearest look-alike: a payroll of six equal salaries of 2,950 USDT (in the same band, six
    recipients, one afternoon) — it is paid again 14 days later to the same people with the same amounts,
    and recurring (sender, recipient, amount) payments are not counted: that is what separates them."""
    alerts = run(con, structuring)
    [hit] = naming(alerts, "structurer")
    assert hit.typology == "structuring" and hit.asset == "USDT"
    assert hit.amount == (2_700 + 2_790 + 2_850 + 2_910 + 2_960 + 2_990) * UNIT
    assert len(hit.txids) == 6 and hit.evidence["jurisdiction"] == "US3K"
    assert hit.evidence["to_exchanges"] == 6 and hit.addresses[0] == text("structurer")
    assert not naming(alerts, "employer")
    assert len(alerts) == 1
    # the threshold is per jurisdiction: under the EU's EUR 1,000 alone nothing is in the band
    assert run(con, structuring, jurisdiction="EU") == []
    with pytest.raises(InvalidInput, match="unknown structuring jurisdiction"):
        run(con, structuring, jurisdiction="XX")


def test_round_tripping_fires_on_a_cycle_not_through_an_exchange(con: duckdb.DuckDBPyConnection) -> None:
    """Fires: 20,000 USDT through three shells back to its origin within 30 minutes (98.5 % returns).
    Nearest look-alike: a user's deposit at an exchange, swept, and withdrawn back to her (a directed
    three-step cycle of the same asset carrying 99.9 % of the value) — the exchange is a service and no
    cycle may pass through a service."""
    alerts = run(con, round_tripping)
    [hit] = naming(alerts, "origin")
    assert hit.addresses[:4] == tuple(text(n) for n in ("origin", "shell-1", "shell-2", "shell-3"))
    assert hit.amount == 20_000 * UNIT and len(hit.txids) == 4
    assert 0.98 < hit.evidence["returned_share"] < 0.99
    assert not naming(alerts, "ulla") and len(alerts) == 1


def test_trade_disguise_fires_on_young_fronts_not_an_old_merchant(con: duckdb.DuckDBPyConnection) -> None:
    """Fires: two fronts first seen today, four hourly invoices of 10,000 +- 10 USDT, no other
    counterparty, cash-out to two exchange deposits. Nearest look-alike: a merchant paying its supplier
    the same hourly invoices, the supplier cashing out the same way — both have existed for 200 days."""
    alerts = run(con, trade_disguise)
    [hit] = naming(alerts, "front-1")
    assert set(hit.addresses) == {text("front-1"), text("front-2")}
    assert hit.amount == 40_000 * UNIT and len(hit.txids) == 6  # four invoices, two cash-outs
    assert not naming(alerts, "merchant") and len(alerts) == 1
    # with a 300-day notion of young the merchant is a front too: age is what separated them
    assert naming(run(con, trade_disguise, young_seconds=300 * DAY), "merchant")


def test_chain_hopping_fires_on_a_fresh_landing_not_a_long_lived_one(con: duckdb.DuckDBPyConnection) -> None:
    """Fires: a bridge payout of 30,000 USDT to a fresh address, one fresh hop, two exchange deposits
    within 21 minutes. Nearest look-alike: the same payout to a user's own address of 200 days, which
    pays it on the same way — the landing address is not fresh."""
    alerts = run(con, chain_hopping)
    [hit] = naming(alerts, "landing")
    assert hit.addresses == (text("landing"), text("layer-1"))
    assert hit.amount == 30_000 * UNIT and len(hit.txids) == 4
    assert hit.evidence == {"source": "bridge", "hops": 1, "cashouts": 2, "usd": 30_000.0}
    assert not naming(alerts, "vera") and len(alerts) == 1


def test_passthrough_fires_on_a_collection_not_a_swept_deposit(con: duckdb.DuckDBPyConnection) -> None:
    """Fires: three victims pay 12,000 USDT to one address in 40 minutes; it is emptied to two exchange
    deposits ten minutes later. Nearest look-alike: an exchange deposit address collecting from two
    users and swept whole 30 minutes later — its receiver is the exchange (a service). The look-alike
    is checked with min_recipients=1 so that only the service rule can silence it."""
    alerts = run(con, passthrough)
    [hit] = naming(alerts, "collector")
    assert hit.typology == "fast_cashout" and hit.addresses[0] == text("collector")
    assert hit.amount == 12_000 * UNIT and len(hit.txids) == 5
    assert hit.evidence["senders"] == 3 and hit.evidence["recipients"] == 2
    loose = run(con, passthrough, min_recipients=1)
    assert not naming(loose, "w-dep")
    assert naming(loose, "collector")


def test_since_height_hides_patterns_before_it(con: duckdb.DuckDBPyConnection) -> None:
    """Only patterns with a transaction at or after ``since_height`` are reported."""
    [(tip,)] = con.execute("SELECT max(height) FROM blocks WHERE chain = ?", [SIM]).fetchall()
    for module in (structuring, round_tripping, trade_disguise, chain_hopping, passthrough):
        d = module.DETECTOR
        ctx = StoreContext(con, SIM, since_height=int(tip) + 1, params={p.name: p.default for p in d.params})
        assert list(d.run(ctx)) == [], d.name

"""The alert queue and the detection framework on tiny real stores (regtest blocks built, ingested): the
registry (pkgutil discovery of a detector package written here, validation, unknown names), the
configuration, the engine (dedup across runs, growth keeps the id and status, a dismissed alert stays
dismissed unless it grows, merging within a run, incremental runs), the review workflow (every allowed
and refused transition, the reason, permissions), events and the hash-chained audit log, the CLI, the
REST API, and `evaluate` scoring stored alerts against a constructed truth.

The detectors are defined here (the registry is monkeypatched): ``toy_chain`` reports every
non-coinbase transaction of the chain, in order, as one pattern (so a store that gains transactions
makes the pattern grow), ``toy_each`` one alert per transaction with rising scores."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from fundtrail.api import ServiceSettings, create_app
from fundtrail.chains.bitcoin.builder import COIN, ChainBuilder, Key, Tx, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.cli.main import app
from fundtrail.detection import alerts, registry
from fundtrail.detection import config as detection_config
from fundtrail.detection.base import Alert, Detector, Param, severity_for
from fundtrail.detection.engine import run_detectors
from fundtrail.errors import InvalidInput, NotFound, PermissionDenied
from fundtrail.evaluation.inputs import load_truth
from fundtrail.evaluation.run import evaluate
from fundtrail.platform import accounts, audit
from fundtrail.platform.principal import LOCAL_ADMIN
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from tests.test_api import assert_error, make_env
from tests.test_cli import run
from tests.test_evaluate import _make_world

CHAIN = "bitcoin-regtest"


# --- detectors defined here ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToyDetector:
    name: str
    typology: str
    families: frozenset[str]
    params: tuple[Param, ...]
    summary: str

    def run(self, ctx: Any) -> Iterable[Alert]:
        rows = ctx.con.execute(
            """SELECT lower(hex(t.txid)), b.height, b.time, t.output_value,
                      (SELECT min(o.address_id) FROM tx_outputs o
                       WHERE o.chain = t.chain AND o.tx_id = t.tx_id)
               FROM transactions t JOIN blocks b ON b.chain = t.chain AND b.block_id = t.block_id
               WHERE t.chain = ? AND NOT t.is_coinbase ORDER BY b.height, t.position""",
            [ctx.chain],
        ).fetchall()
        if self.name == "toy_each":
            for k, (txid, height, t, value, aid) in enumerate(rows):
                if height >= ctx.since_height:
                    score = min(100.0, 20.0 * (k + 1))
                    yield self._alert(ctx, [txid], [aid], t, t, value, score)
            return
        if len(rows) < int(ctx.params["min_txs"]) or max(r[1] for r in rows) < ctx.since_height:
            return
        txids, aids = [r[0] for r in rows], [r[4] for r in rows]
        yield self._alert(ctx, txids, aids, rows[0][2], rows[-1][2], rows[0][3], 50.0)
        if ctx.params["also_prefix"]:  # the same pattern's beginning, which the engine merges
            yield self._alert(ctx, txids[:2], aids[:2], rows[0][2], rows[1][2], rows[0][3], 40.0)

    def _alert(
        self, ctx: Any, txids: list[str], aids: list[int], t0: int, t1: int, amount: int, score: float
    ) -> Alert:
        return Alert(
            self.name,
            self.typology,
            ctx.chain,
            severity_for(score),
            score,
            tuple(ctx.address_texts(aids)),
            tuple(txids),
            int(t0),
            int(t1),
            int(amount),
            "BTC",
            f"{len(txids)} linked transaction(s) moving {amount:,} satoshi",
            evidence={"hops": len(txids)},
        )


TOY_CHAIN = ToyDetector(
    "toy_chain",
    "peeling_chain",
    frozenset({"bitcoin"}),
    (
        Param("min_txs", 2, "transactions", "shortest pattern reported"),
        Param("also_prefix", 0, "count", "1: also report the first two transactions as their own alert"),
    ),
    "every transaction of the chain as one growing pattern",
)
TOY_EACH = ToyDetector("toy_each", "structuring", frozenset({"bitcoin"}), (), "one alert per transaction")


@pytest.fixture
def toys(monkeypatch: pytest.MonkeyPatch) -> dict[str, Detector]:
    found: dict[str, Detector] = {
        "toy_chain": registry.validate("toy_chain", TOY_CHAIN),
        "toy_each": registry.validate("toy_each", TOY_EACH),
    }
    monkeypatch.setattr(registry, "_cache", found)
    return found


# --- a tiny real store ------------------------------------------------------------------------------------


def _chain(hops: int = 5) -> list[bytes]:
    """Genesis, a coinbase to A (height 1), then one transaction per block (heights 2..hops+1), each
    spending the previous one's output: t1 -> t2 -> ... -> t<hops>."""
    b = ChainBuilder()
    prev: Tx = b.add_block(miner=Key("A")).txs[0]
    key = Key("A")
    for i in range(hops):
        nxt = Key(f"A{i}")
        t = b.spend([(prev.outpoint(0), key)], [TxOut(50 * COIN - (i + 1) * 10_000, nxt.p2pkh())])
        b.add_block([t])
        prev, key = t, nxt
    return b.raw_blocks()


def _write(con: duckdb.DuckDBPyConnection, raws: list[bytes]) -> None:
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    starts = np.r_[0, ends[:-1]].astype(np.int64)
    write_blocks(con, decode_blocks(buf, starts, ends, REGTEST), "test")


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = connect(tmp_path / "alerts.duckdb")
    yield c
    c.close()


def _alert(c: duckdb.DuckDBPyConnection, alert_id: int = 1) -> dict[str, Any]:
    return alerts.show_alert(c, LOCAL_ADMIN, alert_id)


def _count(c: duckdb.DuckDBPyConnection, sql: str) -> int:
    return int(c.execute(sql).fetchall()[0][0])


# --- registry and configuration ---------------------------------------------------------------------------

MODULE = """
from fundtrail.detection.base import Param


class _D:
    name = "{name}"
    typology = "mixing"
    families = frozenset({families})
    params = (Param("a", 1, "count", "a"), Param("{second}", 2.5, "share", "b"))
    summary = "a toy"

    def run(self, ctx):
        return []


DETECTOR = _D()
"""


def _package(root: Path, pkg: str, modules: dict[str, str]) -> Any:
    d = root / pkg
    d.mkdir()
    (d / "__init__.py").write_text("")
    for name, text in modules.items():
        (d / f"{name}.py").write_text(text)
    sys.path.insert(0, str(root))
    try:
        __import__(pkg)
    finally:
        sys.path.remove(str(root))
    return sys.modules[pkg]


def test_registry_discovers_and_validates_detector_modules(tmp_path: Path) -> None:
    good = MODULE.format(name="mix_one", families='{"bitcoin", "evm"}', second="b")
    helper = "X = 1\n"  # a module without DETECTOR is a helper, skipped
    pkg = _package(tmp_path, "ft_dets_good", {"mix_one": good, "_private": good, "helper": helper})
    found = registry.discover(pkg)
    assert list(found) == ["mix_one"] and found["mix_one"].families == frozenset({"bitcoin", "evm"})
    bad = {
        "renamed": (MODULE.format(name="other", families='{"bitcoin"}', second="b"), "is 'other', not the"),
        "dupes": (MODULE.format(name="dupes", families='{"bitcoin"}', second="a"), "parameter names repeat"),
        "fam": (MODULE.format(name="fam", families='{"solana"}', second="b"), "unknown chain families"),
    }
    for i, (name, (text, message)) in enumerate(bad.items()):
        pkg = _package(tmp_path, f"ft_dets_bad{i}", {name: text})
        with pytest.raises(TypeError, match=message):
            registry.discover(pkg)


def test_registry_get_names_the_available_detectors(toys: dict[str, Detector]) -> None:
    assert [d.name for d in registry.get(None)] == ["toy_chain", "toy_each"]
    assert [d.name for d in registry.get(["toy_each", "toy_chain", "toy_each"])] == ["toy_each", "toy_chain"]
    with pytest.raises(InvalidInput) as e:
        registry.get(["toy_chain", "peel"])
    assert e.value.line() == "unknown detector 'peel': choose from toy_chain, toy_each"
    assert registry.parse_names(" toy_chain, toy_each ") == ["toy_chain", "toy_each"]
    with pytest.raises(InvalidInput, match="--detectors is empty"):
        registry.parse_names(" , ")


def test_the_real_detector_modules_are_valid() -> None:
    # whatever detectors are installed, each passes validation (discover raises otherwise)
    for name, det in registry.discover().items():
        assert det.name == name and det.families <= registry.FAMILIES


def test_configuration_overrides_and_refusals(tmp_path: Path, toys: dict[str, Detector]) -> None:
    f = tmp_path / "fundtrail.toml"
    f.write_text("[detection.toy_chain]\nmin_txs = 4\n[detection.prices_usd]\nbtc = 50000\n[clustering]\n")
    cfg = detection_config.load(f, toys)
    assert cfg.params == {"toy_chain": {"min_txs": 4}}
    assert cfg.prices_usd["BTC"] == 50_000.0 and cfg.prices_usd["ETH"] == 3_000.0
    assert detection_config.effective(toys["toy_chain"], cfg.params) == {"min_txs": 4, "also_prefix": 0}
    assert detection_config.load(None, toys).params == {}
    refused = {
        "[detection.nope]\nx = 1\n": f"{f}: unknown detector 'nope': configure one of: toy_chain, toy_each",
        "[detection.toy_chain]\nmin_tx = 1\n": (
            f"{f}: unknown parameter 'min_tx' of detector toy_chain: valid parameters: min_txs, also_prefix"
        ),
        "[detection.toy_chain]\nmin_txs = 2.5\n": (
            f"{f} [detection.toy_chain]: min_txs = 2.5 is not an integer: give an integer (transactions; "
            "default 2)"
        ),
        '[detection.toy_chain]\nmin_txs = "3"\n': f"{f} [detection.toy_chain]: min_txs = '3' is not an",
        "[detection.prices_usd]\nBTC = -1\n": f"{f}: [detection.prices_usd] BTC = -1 is not a positive",
        "[detection\n": f"configuration file {f} is not valid TOML",
    }
    for text, message in refused.items():
        f.write_text(text)
        with pytest.raises(InvalidInput) as e:
            detection_config.load(f, toys)
        assert e.value.line().startswith(message), e.value.line()
        assert "\n" not in e.value.line()
    with pytest.raises(InvalidInput, match="does not exist"):
        detection_config.load(tmp_path / "missing.toml", toys)


# --- the engine: dedup, growth, dismissal -----------------------------------------------------------------


def test_dedup_growth_and_dismissal_across_runs(con: duckdb.DuckDBPyConnection, toys: Any) -> None:
    raws = _chain(5)  # blocks 0..6: t1 at height 2 ... t5 at height 6
    _write(con, raws[:5])  # t1..t3
    r1 = run_detectors(con, ["toy_chain"])
    assert (r1.run_id, r1.totals()["raised"], r1.detectors[0].since_height) == (1, 1, 0)
    a = _alert(con)
    assert (a["status"], len(a["txids"]), a["first_seen_run"], a["last_seen_run"]) == ("new", 3, 1, 1)
    assert a["amount"] == 50 * COIN - 10_000 and a["asset"] == "BTC" and a["severity"] == "medium"
    assert a["events"][0] | {"at": None} == {
        "seq": 1, "who": "fundtrail detect", "user_id": None, "at": None, "from": None, "to": "new",
        "reason": "raised by detect run 1",
    }  # fmt: skip
    alerts.set_status(con, LOCAL_ADMIN, 1, "escalated", "large and fresh")

    # the store gains t4: the incremental run (from height 5) finds the pattern grown
    _write(con, raws[5:6])
    r2 = run_detectors(con, ["toy_chain"])
    d = r2.detectors[0]
    assert (d.since_height, d.raised, d.updated, d.reopened, d.seen) == (5, 0, 1, 0, 0)
    a = _alert(con)
    assert (a["alert_id"], a["status"], len(a["txids"]), a["first_seen_run"], a["last_seen_run"]) == (
        1, "escalated", 4, 1, 2,
    )  # fmt: skip
    assert a["explanation"].startswith("4 linked") and a["evidence"] == {"hops": 4}

    # nothing new: the chain is up to date and skipped; a full rescan sees the alert again unchanged
    r3 = run_detectors(con, ["toy_chain"])
    assert [(c.chain, c.status) for c in r3.chains] == [(CHAIN, "up to date")] and r3.detectors == []
    r4 = run_detectors(con, ["toy_chain"], since_height=0)
    assert (r4.totals()["seen"], r4.totals()["raised"], r4.totals()["updated"]) == (1, 0, 0)
    assert _alert(con)["last_seen_run"] == 4 and _count(con, "SELECT count(*) FROM alerts") == 1

    # dismissed: seen again, it stays dismissed
    alerts.set_status(con, LOCAL_ADMIN, 1, "dismissed", "the exchange's own consolidation")
    run_detectors(con, ["toy_chain"], since_height=0)
    a = _alert(con)
    assert (a["status"], a["status_reason"], a["last_seen_run"]) == (
        "dismissed", "the exchange's own consolidation", 5,
    )  # fmt: skip

    # ... until it grows: back to new, with an event and an audit entry saying why
    _write(con, raws[6:])
    r6 = run_detectors(con, ["toy_chain"])
    assert (r6.totals()["updated"], r6.totals()["reopened"]) == (1, 1)
    a = _alert(con)
    reason = "reopened by detect run 6: the pattern grew from 4 to 5 transactions"
    assert (a["alert_id"], a["status"], a["status_reason"], len(a["txids"])) == (1, "new", reason, 5)
    assert [(e["seq"], e["from"], e["to"], e["who"]) for e in a["events"]] == [
        (1, None, "new", "fundtrail detect"),
        (2, "new", "escalated", "local-admin"),
        (3, "escalated", "dismissed", "local-admin"),
        (4, "dismissed", "new", "fundtrail detect"),
    ]
    assert a["events"][3]["reason"] == reason
    log = audit.list_entries(con, LOCAL_ADMIN, target="alert:1")["entries"]
    assert [(e["action"], e["user_name"], e["params"]["to"]) for e in reversed(log)] == [
        ("alert.status", "local-admin", "escalated"),
        ("alert.status", "local-admin", "dismissed"),
        ("alert.status", "fundtrail detect", "new"),
    ]
    runs = audit.list_entries(con, LOCAL_ADMIN, action="detect.run")["entries"]
    assert [e["target"] for e in reversed(runs)] == [f"detector_run:{i}" for i in range(1, 7)]
    assert audit.verify(con).ok
    # the runs are recorded with the tip they saw
    tips = [
        json.loads(t) for (t,) in con.execute("SELECT tips FROM detector_runs ORDER BY run_id").fetchall()
    ]
    assert [t.get(CHAIN, {}).get("tip") for t in tips] == [4, 5, None, 5, 5, 6]


def test_merging_within_a_run_and_parameter_overrides(
    con: duckdb.DuckDBPyConnection, toys: dict[str, Detector]
) -> None:
    _write(con, _chain(3))
    r = run_detectors(con, ["toy_chain"], params={"toy_chain": {"also_prefix": 1}})
    d = r.detectors[0]
    assert (d.alerts, d.raised, d.merged) == (2, 1, 1)  # the 2-transaction prefix folds into the whole
    assert len(_alert(con)["txids"]) == 3
    # a parameter that silences the detector; a wrong override is refused before anything runs
    r = run_detectors(con, ["toy_chain"], since_height=0, params={"toy_chain": {"min_txs": 4}})
    assert r.detectors[0].alerts == 0 and _alert(con)["last_seen_run"] == 1
    with pytest.raises(InvalidInput, match="unknown parameter 'min' of detector toy_chain"):
        run_detectors(con, ["toy_chain"], params={"toy_chain": {"min": 4}})
    with pytest.raises(InvalidInput, match="--since -1 is negative"):
        run_detectors(con, since_height=-1)
    with pytest.raises(NotFound, match="no sim-ethereum data in the store"):
        run_detectors(con, chains=["sim-ethereum"])
    with pytest.raises(InvalidInput, match="unknown chain 'nochain'"):
        run_detectors(con, chains=["nochain"])
    assert _count(con, "SELECT count(*) FROM detector_runs") == 2


def test_a_failing_detector_stores_nothing(
    con: duckdb.DuckDBPyConnection, toys: dict[str, Detector], monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(con, _chain(3))

    @dataclass(frozen=True)
    class Liar(ToyDetector):
        def run(self, ctx: Any) -> Iterable[Alert]:
            for a in super().run(ctx):
                yield Alert(**{**a.__dict__, "detector": "someone_else"})

    liar = Liar("toy_chain", "peeling_chain", frozenset({"bitcoin"}), TOY_CHAIN.params, "x")
    monkeypatch.setattr(registry, "_cache", {"toy_chain": liar, "toy_each": TOY_EACH})
    with pytest.raises(RuntimeError, match="not an Alert of toy_chain"):
        run_detectors(con)
    assert _count(con, "SELECT count(*) FROM alerts") == 0
    assert _count(con, "SELECT count(*) FROM detector_runs") == 0


# --- listing and the workflow -------------------------------------------------------------------------


def test_list_filters_and_pagination(con: duckdb.DuckDBPyConnection, toys: dict[str, Detector]) -> None:
    _write(con, _chain(5))
    run_detectors(con)  # toy_chain: 1 alert (id 1); toy_each: 5 alerts (ids 2..6, scores 20..100)
    every = alerts.list_alerts(con, LOCAL_ADMIN)
    assert [a["alert_id"] for a in every["alerts"]] == [6, 5, 4, 3, 2, 1]  # newest first
    assert (every["total"], every["truncated"]) == (6, False)

    def ids(**kw: Any) -> list[int]:
        return [a["alert_id"] for a in alerts.list_alerts(con, LOCAL_ADMIN, **kw)["alerts"]]

    assert ids(detector="toy_each", min_score=60) == [6, 5, 4]
    assert ids(severity="critical") == [6] and ids(severity="low") == [2]
    assert ids(typology="peeling_chain") == [1] and ids(chain="bitcoin") == []
    alerts.set_status(con, LOCAL_ADMIN, 3, "reviewing")
    assert ids(status="reviewing") == [3] and len(ids(status="new")) == 5
    page = alerts.list_alerts(con, LOCAL_ADMIN, limit=2, offset=2)
    assert [a["alert_id"] for a in page["alerts"]] == [4, 3] and page["truncated"] and page["total"] == 6
    for kw, message in (
        ({"status": "open"}, "unknown alert status 'open': use one of new, reviewing, escalated, dismissed"),
        ({"severity": "huge"}, "unknown severity 'huge'"),
        ({"min_score": 101.0}, "minimum score 101.0 is outside 0-100"),
        ({"limit": 0}, "limit 0 is out of range"),
        ({"offset": -1}, "offset -1 is negative"),
    ):
        with pytest.raises(InvalidInput) as e:
            alerts.list_alerts(con, LOCAL_ADMIN, **kw)
        assert e.value.line().startswith(message)


def test_every_transition_of_the_workflow(con: duckdb.DuckDBPyConnection, toys: dict[str, Detector]) -> None:
    _write(con, _chain(2))
    run_detectors(con, ["toy_chain"])
    allowed: set[tuple[str, str]] = set()
    for old in alerts.STATUSES:
        for new in alerts.STATUSES:
            con.execute("UPDATE alerts SET status = ? WHERE alert_id = 1", [old])  # the starting point
            before = _count(con, "SELECT count(*) FROM alert_events")
            try:
                out = alerts.set_status(con, LOCAL_ADMIN, "1", new, "checked")
            except InvalidInput as e:
                assert e.line() == (
                    f"alert 1 is {old}: it cannot become {new}: from {old} an alert may become "
                    f"{', '.join(alerts.TRANSITIONS[old])}"
                )
                assert _count(con, "SELECT count(*) FROM alert_events") == before  # nothing written
                continue
            allowed.add((old, new))
            assert (out["status"], out["status_reason"]) == (new, "checked")
            assert (out["events"][-1]["from"], out["events"][-1]["to"]) == (old, new)
    assert allowed == {
        ("new", "reviewing"), ("new", "escalated"), ("new", "dismissed"),
        ("reviewing", "escalated"), ("reviewing", "dismissed"), ("reviewing", "new"),
        ("escalated", "reviewing"), ("escalated", "dismissed"),
        ("dismissed", "reviewing"),
    }  # fmt: skip
    assert len(audit.list_entries(con, LOCAL_ADMIN, action="alert.status")["entries"]) == 9
    assert audit.verify(con).ok


def test_reason_permissions_and_unknown_alerts(con: duckdb.DuckDBPyConnection, toys: Any) -> None:
    _write(con, _chain(2))
    run_detectors(con, ["toy_chain"])
    for reason in (None, "", "   "):
        with pytest.raises(InvalidInput) as e:
            alerts.set_status(con, LOCAL_ADMIN, 1, "dismissed", reason)
        assert (
            e.value.line() == "dismissing an alert needs a reason: give a reason (why it is not suspicious)"
        )
    with pytest.raises(InvalidInput, match="reason holds control characters"):
        alerts.set_status(con, LOCAL_ADMIN, 1, "reviewing", "a\x00b")
    with pytest.raises(InvalidInput, match="unknown alert status 'closed'"):
        alerts.set_status(con, LOCAL_ADMIN, 1, "closed", "x")
    with pytest.raises(NotFound, match="no alert 99: see `fundtrail alerts list`"):
        alerts.set_status(con, LOCAL_ADMIN, 99, "reviewing")
    with pytest.raises(NotFound):
        alerts.show_alert(con, LOCAL_ADMIN, 99)
    with pytest.raises(InvalidInput, match="alert id 'x' is not an id"):
        alerts.show_alert(con, LOCAL_ADMIN, "x")
    accounts.create_org(con, "fiu")
    accounts.create_user(con, "ana", "fiu", "analyst")
    accounts.create_user(con, "ivan", "fiu", "investigator")
    accounts.create_user(con, "sam", "fiu", "screening-client")
    ana, ivan = accounts.principal_for(con, "ana"), accounts.principal_for(con, "ivan")
    assert alerts.list_alerts(con, ana)["total"] == 1  # analysts read
    with pytest.raises(PermissionDenied, match=r"user ana \(analyst\) may not open and change cases"):
        alerts.set_status(con, ana, 1, "reviewing")
    with pytest.raises(PermissionDenied):
        alerts.list_alerts(con, accounts.principal_for(con, "sam"))
    out = alerts.set_status(con, ivan, 1, "dismissed", "known payroll")
    assert (out["events"][-1]["who"], out["events"][-1]["user_id"]) == ("ivan", ivan.user_id)
    entry = audit.list_entries(con, LOCAL_ADMIN, target="alert:1")["entries"][0]
    assert (entry["user_name"], entry["params"]) == (
        "ivan", {"from": "new", "to": "dismissed", "reason": "known payroll"},
    )  # fmt: skip
    assert entry["result_digest"] == audit.digest(out)
    assert audit.verify(con).ok


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli(tmp_path: Path, toys: dict[str, Detector]) -> None:
    db = tmp_path / "cli.duckdb"
    c = connect(db)
    _write(c, _chain(3))
    accounts.create_org(c, "fiu")
    accounts.create_user(c, "ana", "fiu", "analyst")
    c.close()
    cli = CliRunner(env={"COLUMNS": "200"})
    listed = cli.invoke(app, ["--db", str(db), "detect", "--list", "--json"])
    assert listed.exit_code == 0, listed.output
    dets = json.loads(listed.output)["detectors"]
    assert [d["name"] for d in dets] == ["toy_chain", "toy_each"]
    assert dets[0]["params"][0] == {
        "name": "min_txs", "default": 2, "unit": "transactions", "help": "shortest pattern reported",
    }  # fmt: skip
    r = cli.invoke(app, ["--db", str(db), "detect", "--detectors", "toy_chain", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["totals"] == {"alerts": 1, "raised": 1, "updated": 0, "reopened": 0, "seen": 0, "merged": 0}
    assert rep["chains"][0]["status"] == "run" and rep["since_height"] is None
    table = cli.invoke(app, ["--db", str(db), "detect", "--since", "0"])
    assert table.exit_code == 0 and "Detector run 2" in table.output and "toy_each" in table.output
    bad = cli.invoke(app, ["--db", str(db), "detect", "--detectors", "nope"])
    assert isinstance(bad.exception, InvalidInput) and "choose from toy_chain, toy_each" in str(bad.exception)
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[detection.toy_chain]\nmin_txs = true\n")
    bad = cli.invoke(app, ["--db", str(db), "detect", "--config", str(cfg)])
    assert isinstance(bad.exception, InvalidInput) and "min_txs = True is not an integer" in str(
        bad.exception
    )

    # the alerts commands through the real CLI (another process: no monkeypatch needed)
    r = run("alerts", "list", "--detector", "toy_each", "--json", db=db)
    assert r.returncode == 0, r.stderr
    listed_alerts = json.loads(r.stdout)
    assert listed_alerts["total"] == 3 and [a["alert_id"] for a in listed_alerts["alerts"]] == [4, 3, 2]
    t = run("alerts", "list", db=db)
    assert t.returncode == 0 and "49.9999 BTC" in t.stdout
    s = run("alerts", "show", "1", "--json", db=db)
    assert s.returncode == 0 and json.loads(s.stdout)["events"][0]["reason"] == "raised by detect run 1"
    d = run("alerts", "set-status", "1", "dismissed", db=db)
    assert (d.returncode, d.stderr.strip()) == (
        2, "error: dismissing an alert needs a reason: give a reason (why it is not suspicious)",
    )  # fmt: skip
    d = run("alerts", "set-status", "1", "reviewing", "--as", "ana", db=db)
    assert d.returncode == 7 and d.stderr.count("\n") == 1 and "may not" in d.stderr
    d = run("alerts", "set-status", "1", "dismissed", "--reason", "test flow", "--json", db=db)
    assert d.returncode == 0, d.stderr
    assert json.loads(d.stdout)["status"] == "dismissed"
    shown = run("alerts", "show", "1", db=db)
    assert "test flow" in shown.stdout and "Events" in shown.stdout
    n = run("alerts", "show", "42", db=db)
    assert (n.returncode, n.stderr.strip()) == (3, "error: no alert 42: see `fundtrail alerts list`")
    v = run("audit", "verify", "--json", db=db)
    assert v.returncode == 0 and json.loads(v.stdout)["ok"] is True


# --- API --------------------------------------------------------------------------------------------------


def test_api_routes(tmp_path: Path, toys: dict[str, Detector]) -> None:
    env = make_env(tmp_path / "api.duckdb")
    c = connect(env.path)
    run_detectors(c, ["toy_each"])
    n = alerts.list_alerts(c, LOCAL_ADMIN)["total"]
    c.close()
    assert n >= 2
    with TestClient(create_app(env.path, ServiceSettings())) as client:
        ana, ann = env.h("ana"), env.h("ann")
        page = client.get("/v1/alerts", params={"limit": 1}, headers=ana).json()
        assert (page["total"], len(page["items"]), page["truncated"]) == (n, 1, True)
        assert page["items"][0]["alert_id"] == n and page["next"]
        rest = client.get("/v1/alerts", params={"cursor": page["next"], "limit": 100}, headers=ana).json()
        assert [a["alert_id"] for a in rest["items"]] == list(range(n - 1, 0, -1))
        one = client.get("/v1/alerts/1", headers=ana)
        assert one.status_code == 200 and one.json()["events"][0]["to"] == "new"
        assert one.json()["txids"] == rest["items"][-1]["txids"]
        ok = client.post("/v1/alerts/1/status", json={"status": "escalated", "reason": "big"}, headers=ann)
        assert ok.status_code == 200 and ok.json()["status"] == "escalated"
        got = client.get("/v1/alerts", params={"status": "escalated"}, headers=ana).json()
        assert [a["alert_id"] for a in got["items"]] == [1]
        assert_error(client.get("/v1/alerts/999", headers=ana), 404)
        assert_error(client.post("/v1/alerts/999/status", json={"status": "reviewing"}, headers=ann), 404)
        assert_error(
            client.post("/v1/alerts/1/status", json={"status": "closed"}, headers=ann), 422, "body.status"
        )
        assert_error(
            client.post("/v1/alerts/1/status", json={"status": "new"}, headers=ann), 422, "body.status"
        )
        assert_error(
            client.post("/v1/alerts/1/status", json={"status": "dismissed"}, headers=ann), 422, "body.reason"
        )
        assert_error(client.get("/v1/alerts", params={"severity": "x"}, headers=ana), 422, "query.severity")
        assert_error(client.post("/v1/alerts/1/status", json={"status": "reviewing"}, headers=ana), 403)
        assert_error(client.get("/v1/alerts", headers=env.h("sam")), 403)
        assert_error(client.get("/v1/alerts"), 401)
        assert client.get("/v1/audit/verify", headers=env.h("alan")).json()["ok"] is True


# --- evaluate with stored alerts ----------------------------------------------------------------------------


def test_evaluate_scores_stored_alerts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _make_world(tmp_path, "E1")  # truth: operation 1 "scam" (scam, hop1, hop2), operation 2 "bridge"
    tx = {name: t.txid.hex() for name, t in w.txs.items()}

    @dataclass(frozen=True)
    class Fixed(ToyDetector):
        def run(self, ctx: Any) -> Iterable[Alert]:
            made = (
                ("scam", (tx["hop1"], tx["hop2"]), ()),  # true: shares the operation's transactions
                ("scam", (tx["pay"],), ()),  # false: an honest payment
                ("scam", (), (w.addr["L1"],)),  # true, by address
                ("mixing", (tx["join"],), ()),  # false: no mixing operation in the truth
            )
            for typology, txids, addrs in made:
                yield Alert(self.name, typology, ctx.chain, "high", 70.0, addrs, txids, 0, 0, None, None, "x")

    fixed = Fixed("fixed", "scam", frozenset({"bitcoin"}), (), "constructed alerts")
    monkeypatch.setattr(registry, "_cache", {"fixed": fixed})
    c = connect(w.store)
    run_detectors(c)
    c.close()
    c = connect(w.store, read_only=True)
    try:
        r = evaluate(c, load_truth(w.out), "haircut", 30, w.store)
    finally:
        c.close()
    det = r["detection"]
    assert det["typologies"]["scam"] == {
        "operations": 1, "detected": 1, "alerts": 3, "true_alerts": 2,
        "precision": 2 / 3, "recall": 1.0, "f1": 0.8,
    }  # fmt: skip
    assert det["typologies"]["mixing"] == {
        "operations": 0, "detected": 0, "alerts": 1, "true_alerts": 0,
        "precision": 0.0, "recall": None, "f1": None,
    }  # fmt: skip
    assert det["typologies"]["bridge"] == {
        "operations": 1, "detected": 0, "alerts": 0, "true_alerts": 0,
        "precision": None, "recall": 0.0, "f1": None,
    }  # fmt: skip
    assert (det["overall"]["operations"], det["overall"]["detected"], det["overall"]["alerts"]) == (2, 1, 4)
    assert det["overall"]["true_alerts"] == 2
    assert r["notes"][-1].startswith("detection: 4 stored alert(s) of fixed scored per typology")
    assert not any("not available" in note for note in r["notes"])


def test_evaluate_leaves_out_alerts_on_chains_the_truth_does_not_cover(tmp_path: Path) -> None:
    """Real data ingested beside a world (the demo's mainnet blocks) raises alerts that are not the
    world's: they are not scored against its truth."""
    w = _make_world(tmp_path, "E1")
    c = connect(w.store)
    c.execute(
        "INSERT INTO alerts (alert_id, dedup_key, detector, typology, chain, severity, score, addresses, "
        "txids, entities, window_start, window_end, explanation, evidence, status, first_seen_run, "
        "last_seen_run, created_at, updated_at) VALUES (1, 'k', 'fixed', 'scam', 'litecoin', 'high', 70, "
        "'[]', '[\"ab\"]', '[]', 0, 0, 'x', '{}', 'new', 1, 1, now(), now())"
    )
    c.close()
    c = connect(w.store, read_only=True)
    try:
        r = evaluate(c, load_truth(w.out), "haircut", 30, w.store)
    finally:
        c.close()
    assert r["detection"] is None
    assert any("no alerts on the world's chains" in note for note in r["notes"])

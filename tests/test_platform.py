"""The platform core on real stores: organisations, users, roles and visibility across two organisations,
API keys hashed at rest, the hash-chained audit log against every kind of tampering, case snapshots of a
real trace and screening on a regtest chain that re-run to the same result, signed case packages passed
between two installations and refused when tampered, and the CLI over all of it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from fundtrail.chains.bitcoin.builder import ChainBuilder, Key, Tx, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.cli.main import app
from fundtrail.errors import CorruptData, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from fundtrail.platform import accounts, audit, cases, package, private_labels, signing
from fundtrail.platform.principal import LOCAL_ADMIN, PERMISSIONS, ROLE_PERMISSIONS, Principal
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from fundtrail.store.schema import LATEST
from fundtrail.tracing.engine import TraceRequest
from fundtrail.tracing.model import Limits

BTC = 100_000_000
CHAIN = "bitcoin-regtest"
GENESIS_ADDRESS = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"


# --- two organisations -----------------------------------------------------------------------------------


@dataclass
class World:
    con: duckdb.DuckDBPyConnection
    path: Path
    users: dict[str, Principal]


def _world(path: Path) -> World:
    con = connect(path)
    accounts.create_org(con, "fiu-a")
    accounts.create_org(con, "fiu-b")
    roles = {
        "a_admin": ("fiu-a", "admin"),
        "a_inv": ("fiu-a", "investigator"),
        "a_inv2": ("fiu-a", "investigator"),
        "a_ana": ("fiu-a", "analyst"),
        "a_scr": ("fiu-a", "screening-client"),
        "b_admin": ("fiu-b", "admin"),
        "b_inv": ("fiu-b", "investigator"),
        "b_ana": ("fiu-b", "analyst"),
    }
    for name, (org, role) in roles.items():
        accounts.create_user(con, name, org, role)
    return World(con, path, {n: accounts.principal_for(con, n) for n in roles})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = _world(tmp_path / "platform.duckdb")
    yield w
    w.con.close()


def test_schema_version_5_has_the_platform_tables(world: World) -> None:
    assert LATEST >= 5  # later migrations add tables of their own
    tables = {r[0] for r in world.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {
        "orgs",
        "users",
        "api_keys",
        "audit_log",
        "audit_head",
        "cases",
        "case_subjects",
        "case_snapshots",
        "case_notes",
        "case_attachments",
        "case_shares",
        "private_labels",
        "trusted_keys",
    } <= tables


def test_permission_table() -> None:
    assert ROLE_PERMISSIONS["screening-client"] == {"screen"}
    assert ROLE_PERMISSIONS["analyst"] == {"screen", "query", "case.read", "label.read"}
    assert ROLE_PERMISSIONS["investigator"] == ROLE_PERMISSIONS["analyst"] | {
        "case.write",
        "label.write",
        "package.export",
        "package.import",
    }
    assert ROLE_PERMISSIONS["admin"] == set(PERMISSIONS)
    assert LOCAL_ADMIN.may("audit.read") and LOCAL_ADMIN.is_local


def test_cases_are_invisible_to_other_organisations(world: World) -> None:
    con, u = world.con, world.users
    case = cases.create_case(con, u["a_inv"], "Ransom proceeds", "wallets of group X")
    cid = case["case_id"]
    assert (case["org"], case["status"], case["access"]) == ("fiu-a", "open", "owner")
    # the same organisation's analyst reads it; another organisation's users cannot tell it exists
    assert cases.show_case(con, u["a_ana"], cid)["title"] == "Ransom proceeds"
    for who in ("b_inv", "b_ana", "b_admin"):
        with pytest.raises(NotFound) as hidden:
            cases.show_case(con, u[who], cid)
        with pytest.raises(NotFound) as never:
            cases.show_case(con, u[who], 999)
        assert hidden.value.line() == never.value.line().replace("999", str(cid))
        if who != "b_ana":  # an analyst is refused writing anywhere first (its role)
            with pytest.raises(NotFound):
                cases.add_note(con, u[who], cid, "hello")
        assert cases.list_cases(con, u[who])["cases"] == []
    assert [c["case_id"] for c in cases.list_cases(con, u["a_ana"])["cases"]] == [cid]
    assert [c["case_id"] for c in cases.list_cases(con, LOCAL_ADMIN)["cases"]] == [cid]


def test_roles_limit_what_users_do_with_cases(world: World) -> None:
    con, u = world.con, world.users
    cid = cases.create_case(con, u["a_inv"], "Case")["case_id"]
    with pytest.raises(PermissionDenied, match=r"a_ana \(analyst\) may not open and change cases"):
        cases.add_note(con, u["a_ana"], cid, "analysts read only")
    with pytest.raises(PermissionDenied):
        cases.create_case(con, u["a_ana"], "x")
    with pytest.raises(PermissionDenied):  # a screening client only screens
        cases.show_case(con, u["a_scr"], cid)
    with pytest.raises(PermissionDenied):
        cases.list_cases(con, u["a_scr"])
    note = cases.add_note(con, u["a_inv2"], cid, "colleague's note")
    assert note["author"] == "a_inv2"
    assert cases.assign(con, u["a_inv"], cid, "a_inv2")["assignee"]["name"] == "a_inv2"
    with pytest.raises(InvalidInput, match="not in the organisation"):
        cases.assign(con, u["a_inv"], cid, "b_inv")
    with pytest.raises(InvalidInput, match="a case belongs to the organisation"):
        cases.create_case(con, LOCAL_ADMIN, "no organisation")


def test_read_and_write_shares(world: World) -> None:
    con, u = world.con, world.users
    cid = cases.create_case(con, u["a_inv"], "Shared case")["case_id"]
    cases.add_subject(con, u["a_inv"], cid, "address", "bitcoin", GENESIS_ADDRESS)
    shares = cases.share(con, u["a_inv"], cid, "fiu-b", "read")
    assert [(s["org"], s["access"]) for s in shares] == [("fiu-b", "read")]
    seen = cases.show_case(con, u["b_ana"], cid)
    assert seen["access"] == "read" and seen["subjects"][0]["value"] == GENESIS_ADDRESS
    assert "shares" not in seen  # who else has access is the owner's business
    assert [c["access"] for c in cases.list_cases(con, u["b_inv"])["cases"]] == ["read"]
    with pytest.raises(PermissionDenied, match="shared with your organisation read-only"):
        cases.add_note(con, u["b_inv"], cid, "write attempt")
    with pytest.raises(PermissionDenied, match="read-only"):
        cases.set_status(con, u["b_inv"], cid, "in-progress")
    cases.share(con, u["a_inv"], cid, "fiu-b", "write")
    assert cases.add_note(con, u["b_inv"], cid, "from fiu-b")["author"] == "b_inv"
    assert cases.set_status(con, u["b_inv"], cid, "in-progress")["status"] == "in-progress"
    # only the owner shares, assigns and exports
    with pytest.raises(PermissionDenied, match="only the organisation that owns"):
        cases.share(con, u["b_inv"], cid, "fiu-b", "write")
    with pytest.raises(PermissionDenied, match="only the organisation that owns"):
        cases.assign(con, u["b_inv"], cid, "b_inv")
    with pytest.raises(PermissionDenied, match="only the organisation that owns"):
        package.export_case(con, u["b_inv"], cid, signing.installation_key(world.path))
    cases.share(con, u["a_inv"], cid, "fiu-b", None)  # revoked: invisible again
    with pytest.raises(NotFound):
        cases.show_case(con, u["b_inv"], cid)


def test_status_and_closed_cases_are_read_only(world: World) -> None:
    con, u = world.con, world.users
    cid = cases.create_case(con, u["a_inv"], "Status")["case_id"]
    for s in ("in-progress", "on-hold", "closed"):
        assert cases.set_status(con, u["a_inv"], cid, s)["status"] == s
    with pytest.raises(InvalidInput, match="is closed"):
        cases.add_note(con, u["a_inv"], cid, "too late")
    with pytest.raises(InvalidInput, match="unknown status"):
        cases.set_status(con, u["a_inv"], cid, "done")
    cases.set_status(con, u["a_inv"], cid, "open")
    assert cases.add_note(con, u["a_inv"], cid, "reopened")["note_id"] == 1


def test_subjects_parse_strictly(world: World) -> None:
    con, u = world.con, world.users
    cid = cases.create_case(con, u["a_inv"], "Subjects")["case_id"]
    tx = "F4184FC596403B9D638783CF57ADFE4C75C605F6356FBC91338530E9831E9E16"
    assert cases.add_subject(con, u["a_inv"], cid, "tx", "bitcoin", tx)["value"] == tx.lower()
    usdt = "0xdAC17F958D2ee523a2206206994597C13D831ec7"
    assert cases.add_subject(con, u["a_inv"], cid, "address", "ethereum", usdt.lower())["value"] == usdt
    assert (
        cases.add_subject(con, u["a_inv"], cid, "cluster", "bitcoin", "cluster:42")["value"] == "cluster:42"
    )
    with pytest.raises(InvalidInput, match="already subject"):
        cases.add_subject(con, u["a_inv"], cid, "cluster", "bitcoin", "42")
    for kind, chain, value in (
        ("address", "bitcoin", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"),  # bad checksum
        ("address", "bitcoin", usdt),
        ("tx", "bitcoin", "0x" + tx),
        ("tx", "bitcoin", tx[:-1]),
        ("cluster", "bitcoin", "cluster:-1"),
        ("wallet", "bitcoin", GENESIS_ADDRESS),
        ("address", "dogecoin", GENESIS_ADDRESS),
    ):
        with pytest.raises(InvalidInput):
            cases.add_subject(con, u["a_inv"], cid, kind, chain, value)


def test_org_admins_manage_only_their_organisation(world: World) -> None:
    con, u = world.con, world.users
    new = accounts.create_user(con, "a_new", "fiu-a", "analyst", u["a_admin"])
    assert new["org"] == "fiu-a"
    with pytest.raises(PermissionDenied):
        accounts.create_user(con, "b_new", "fiu-b", "analyst", u["a_admin"])
    with pytest.raises(PermissionDenied):
        accounts.create_user(con, "x", "fiu-a", "analyst", u["a_inv"])
    with pytest.raises(NotFound):  # another organisation's users do not exist for it
        accounts.create_key(con, "b_inv", actor=u["a_admin"])
    assert {x["org"] for x in accounts.list_users(con, actor=u["a_admin"])} == {"fiu-a"}
    assert accounts.set_role(con, "a_new", "investigator", u["a_admin"])["role"] == "investigator"
    with pytest.raises(PermissionDenied, match="local administrator"):
        accounts.create_org(con, "fiu-c", u["a_admin"])
    with pytest.raises(InvalidInput, match="exists"):
        accounts.create_user(con, "A_NEW", "fiu-a", "analyst")
    with pytest.raises(InvalidInput, match="unknown role"):
        accounts.create_user(con, "z", "fiu-a", "superuser")
    with pytest.raises(InvalidInput, match="not a valid name"):
        accounts.create_org(con, "'; DROP TABLE users; --")
    assert [o["name"] for o in accounts.list_orgs(con, u["b_ana"])] == ["fiu-b"]


# --- API keys --------------------------------------------------------------------------------------------


def _all_text(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every value of every table of the store, as text (BLOBs also as hex)."""
    cols = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns ORDER BY ALL"
    ).fetchall()
    out: list[str] = []
    for table, column, kind in cols:
        expr = f'lower(hex("{column}"))' if kind == "BLOB" else f'CAST("{column}" AS VARCHAR)'
        out += [
            str(r[0]) for r in con.execute(f'SELECT {expr} FROM "{table}"').fetchall() if r[0] is not None
        ]
        if kind == "BLOB":
            out += [
                bytes(r[0]).decode("latin-1")
                for r in con.execute(f'SELECT "{column}" FROM "{table}"').fetchall()
                if r[0] is not None
            ]
    return out


def test_keys_are_hashed_at_rest_and_authenticate(world: World) -> None:
    con, u = world.con, world.users
    key_id, key = accounts.create_key(con, "a_inv", rate_limit=25)
    prefix, kid, secret = key.split("_")
    assert (prefix, kid, len(secret)) == ("ft", key_id, 64)
    p = accounts.authenticate(con, key)
    assert p == Principal(u["a_inv"].user_id, "a_inv", u["a_inv"].org_id, "investigator", key_id, 25)
    stored = con.execute("SELECT secret_sha256 FROM api_keys WHERE key_id = ?", [key_id]).fetchall()[0][0]
    assert bytes(stored) == hashlib.sha256(secret.encode()).digest()
    values = _all_text(con)
    assert values and not any(secret in v or key in v for v in values)
    assert not any(bytes.fromhex(secret).decode("latin-1") in v for v in values)
    listed = accounts.list_keys(con, "a_inv")
    assert [k["key_id"] for k in listed] == [key_id] and "secret" not in json.dumps(listed)
    assert listed[0]["last_used_at"] is not None  # authenticate recorded the use
    con.close()
    raw = world.path.read_bytes()
    assert secret.encode() not in raw and bytes.fromhex(secret) not in raw
    world.con = connect(world.path)


def test_unknown_malformed_and_revoked_keys_are_refused(world: World) -> None:
    con = world.con
    key_id, key = accounts.create_key(con, "b_ana")
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    for bad in (wrong, "ft_0000000000000000_" + "0" * 64, "", "Bearer " + key, key + "x", key.upper()):
        with pytest.raises(Unauthenticated) as exc:
            accounts.authenticate(con, bad)
        assert key.split("_")[2] not in exc.value.line()
    accounts.revoke_key(con, key_id)
    with pytest.raises(Unauthenticated, match="revoked"):
        accounts.authenticate(con, key)
    with pytest.raises(InvalidInput, match="already revoked"):
        accounts.revoke_key(con, key_id)
    with pytest.raises(InvalidInput, match="rate limit"):
        accounts.create_key(con, "b_ana", rate_limit=0)
    # a role change applies to the next request with the same key
    _, key2 = accounts.create_key(con, "b_ana")
    accounts.set_role(con, "b_ana", "screening-client")
    assert accounts.authenticate(con, key2).role == "screening-client"


def test_key_cache_answers_without_a_query_until_a_change(world: World) -> None:
    con = world.con
    key_id, key = accounts.create_key(con, "a_ana")
    cache = accounts.KeyCache(ttl_s=60)
    assert accounts.authenticate(con, key, cache=cache).role == "analyst"
    con.execute("UPDATE users SET role = 'admin' WHERE name = 'a_ana'")  # behind the library's back
    assert accounts.authenticate(con, key, cache=cache).role == "analyst"  # cached
    with pytest.raises(Unauthenticated):  # a wrong secret for a cached key id is never a hit
        accounts.authenticate(con, key[:-4] + "0000", cache=cache)
    accounts.revoke_key(con, key_id)  # any change through the library drops every cached entry
    with pytest.raises(Unauthenticated, match="revoked"):
        accounts.authenticate(con, key, cache=cache)
    _, key2 = accounts.create_key(con, "a_ana")
    assert accounts.authenticate(con, key2, cache=cache).role == "admin"
    accounts.set_role(con, "a_ana", "analyst")
    assert accounts.authenticate(con, key2, cache=cache).role == "analyst"
    assert accounts.authenticate(con, key2, cache=accounts.KeyCache(ttl_s=0)).role == "analyst"


def test_case_list_pages(world: World) -> None:
    con, u = world.con, world.users
    ids = [cases.create_case(con, u["a_inv"], f"Case {i}")["case_id"] for i in range(5)]
    page1 = cases.list_cases(con, u["a_ana"], limit=2)
    page3 = cases.list_cases(con, u["a_ana"], limit=2, offset=4)
    assert [c["case_id"] for c in page1["cases"]] == ids[::-1][:2] and page1["truncated"]
    assert [c["case_id"] for c in page3["cases"]] == [ids[0]] and not page3["truncated"]
    assert page1["total"] == page3["total"] == 5


# --- audit log -------------------------------------------------------------------------------------------

N = 10


def _log(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / "audit.duckdb")
    for i in range(1, N + 1):
        result = {"i": i, "amount": 10**20 + i}
        audit.append(con, "tester", "test.action", f"t:{i}", {"i": i}, audit.digest(result))
    return con


def _forge(con: duckdb.DuckDBPyConnection) -> None:
    """Append an entry with a correct hash, bypassing append (the head is not moved)."""
    prev = con.execute("SELECT hash FROM audit_log WHERE seq = ?", [N]).fetchall()[0][0]
    fields = (N + 1, "2024-01-01T00:00:00.000000Z", None, "forger", None, "x", "t:x", "{}", "0" * 64, prev)
    con.execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [*fields, audit.entry_hash(*fields)]
    )


def _rehash(con: duckdb.DuckDBPyConnection) -> None:
    """Edit entry 4 and recompute its hash (the next entry still names the old one)."""
    con.execute("UPDATE audit_log SET target = 't:covered-up' WHERE seq = 4")
    e = audit.AuditEntry(*con.execute(f"SELECT {audit._COLUMNS} FROM audit_log WHERE seq = 4").fetchall()[0])
    con.execute("UPDATE audit_log SET hash = ? WHERE seq = 4", [e.computed_hash()])


TAMPERING: dict[str, tuple[Callable[[duckdb.DuckDBPyConnection], object], int | None, str]] = {
    "edit one row": (
        lambda c: c.execute("UPDATE audit_log SET params = '{\"i\":99}' WHERE seq = 4"),
        4,
        "edited",
    ),
    "edit its time": (
        lambda c: c.execute("UPDATE audit_log SET logged_at = '2020' WHERE seq = 3"),
        3,
        "edited",
    ),
    "edit the who": (lambda c: c.execute("UPDATE audit_log SET user_name = 'x' WHERE seq = 1"), 1, "edited"),
    "swap two": (
        lambda c: c.execute(
            "UPDATE audit_log SET seq = CASE seq WHEN 4 THEN 5 ELSE 4 END WHERE seq IN (4, 5)"
        ),
        4,
        "reordered",
    ),
    "delete a middle one": (lambda c: c.execute("DELETE FROM audit_log WHERE seq = 5"), 5, "deleted"),
    "delete the first": (lambda c: c.execute("DELETE FROM audit_log WHERE seq = 1"), 1, "deleted"),
    "delete the last": (lambda c: c.execute(f"DELETE FROM audit_log WHERE seq = {N}"), N, "truncated"),
    "delete the last two": (
        lambda c: c.execute(f"DELETE FROM audit_log WHERE seq >= {N - 1}"),
        N - 1,
        "truncated",
    ),
    "delete all": (lambda c: c.execute("DELETE FROM audit_log"), 1, "truncated"),
    "edit and re-hash": (_rehash, 4, "edited"),
    "edit the last and re-hash": (
        lambda c: c.execute(f"UPDATE audit_log SET hash = '{'f' * 64}' WHERE seq = {N}"),
        N,
        "edited",
    ),
    "append outside fundtrail": (_forge, N + 1, "inserted"),
    "delete the head record": (lambda c: c.execute("DELETE FROM audit_head"), None, "head"),
}


def test_append_many_chains_like_append(tmp_path: Path) -> None:
    con = _log(tmp_path)
    p = Principal(7, "svc", 3, "screening-client", "k", 100)
    batch = [(p, "screen", f"bitcoin:{i}", {"items": i}, audit.digest([i])) for i in range(250)]
    entries = audit.append_many(con, batch)
    assert [e.seq for e in entries] == list(range(N + 1, N + 251))
    assert entries[0].prev_hash == con.execute(f"SELECT hash FROM audit_log WHERE seq = {N}").fetchall()[0][0]
    assert all(e.computed_hash() == e.hash for e in entries) and audit.head(con)["hash"] == entries[-1].hash
    audit.append(con, "tester", "test.action", "t:last", {}, audit.digest(None))
    report = audit.verify(con)
    assert report.ok and report.entries == N + 251
    assert audit.append_many(con, []) == []
    with pytest.raises(InvalidInput):
        audit.append_many(con, [("x", "Not An Action", "t", {}, audit.digest(1))])


def test_audit_chain_verifies(tmp_path: Path) -> None:
    con = _log(tmp_path)
    report = audit.verify(con)
    assert report.ok and report.entries == N and report.head_seq == N
    assert report.head_hash == audit.head(con)["hash"]
    first = audit.list_entries(con, limit=N)["entries"][-1]
    assert first["seq"] == 1 and first["prev_hash"] == audit.GENESIS
    assert first["result_digest"] == audit.digest({"amount": 10**20 + 1, "i": 1})  # key order is irrelevant


@pytest.mark.parametrize("how", list(TAMPERING))
def test_audit_tampering_is_detected(tmp_path: Path, how: str) -> None:
    con = _log(tmp_path)
    tamper, first_bad, problem = TAMPERING[how]
    tamper(con)
    report = audit.verify(con)
    assert not report.ok
    assert (report.first_bad_seq, report.problem) == (first_bad, problem), report.line()
    with pytest.raises(CorruptData, match="audit log broken"):
        report.raise_if_bad()


def test_every_case_action_is_audited(world: World) -> None:
    con, u = world.con, world.users
    before = audit.head(con)["seq"]
    cid = cases.create_case(con, u["a_inv"], "Audited")["case_id"]
    cases.add_subject(con, u["a_inv"], cid, "address", "bitcoin", GENESIS_ADDRESS)
    note = cases.add_note(con, u["a_inv"], cid, "n", [("evidence.txt", b"proof")])
    cases.share(con, u["a_inv"], cid, "fiu-b", "read")
    shown = cases.show_case(con, u["b_ana"], cid)
    cases.set_status(con, u["a_inv"], cid, "in-progress")
    cases.get_attachment(con, u["b_ana"], cid, note["attachments"][0]["attachment_id"])
    entries = audit.list_entries(con, limit=100)["entries"][::-1]
    mine = [(e["action"], e["target"], e["user_name"]) for e in entries if e["seq"] > before]
    assert mine == [
        ("case.create", f"case:{cid}", "a_inv"),
        ("case.subject.add", f"case:{cid}/subject:1", "a_inv"),
        ("case.note.add", f"case:{cid}/note:1", "a_inv"),
        ("case.share", f"case:{cid}", "a_inv"),
        ("case.show", f"case:{cid}", "b_ana"),
        ("case.status", f"case:{cid}", "a_inv"),
        ("case.attachment.read", f"case:{cid}", "b_ana"),
    ]
    show_entry = next(e for e in entries if e["action"] == "case.show")
    assert show_entry["result_digest"] == audit.digest(shown) and show_entry["org_id"] == u["b_ana"].org_id
    status_entry = next(e for e in entries if e["action"] == "case.status")
    assert status_entry["params"] == {"status": "in-progress", "was": "open"}
    # an organisation's admin sees its own organisation's entries only
    b_entries = audit.list_entries(con, u["b_admin"], limit=100)["entries"]
    assert {e["org_id"] for e in b_entries} == {u["b_admin"].org_id}
    with pytest.raises(PermissionDenied):
        audit.list_entries(con, u["a_inv"])
    assert audit.verify(con).ok


def test_private_labels_stay_in_their_organisation(world: World) -> None:
    con, u = world.con, world.users
    lab = private_labels.add_private_label(
        con, u["a_inv"], "bitcoin", GENESIS_ADDRESS, "scam", "suspect wallet"
    )
    assert (lab["category"], lab["address"]) == ("scam", GENESIS_ADDRESS)
    assert private_labels.list_private_labels(con, u["a_ana"])["total"] == 1
    assert private_labels.list_private_labels(con, u["b_inv"])["total"] == 0
    with pytest.raises(NotFound):
        private_labels.delete_private_label(con, u["b_inv"], lab["label_id"])
    with pytest.raises(PermissionDenied):
        private_labels.add_private_label(con, u["a_ana"], "bitcoin", GENESIS_ADDRESS, "scam", "x")
    with pytest.raises(InvalidInput, match="unknown category"):
        private_labels.add_private_label(con, u["a_inv"], "bitcoin", GENESIS_ADDRESS, "villain", "x")
    assert (
        private_labels.edit_private_label(con, u["a_inv"], lab["label_id"], category="ransomware")["category"]
        == "ransomware"
    )
    private_labels.delete_private_label(con, u["a_inv"], lab["label_id"])
    actions = [e["action"] for e in audit.list_entries(con, limit=5)["entries"]]
    assert {"label.private.add", "label.private.edit", "label.private.delete"} <= set(actions)


# --- snapshots on a real regtest chain -------------------------------------------------------------------


@dataclass
class Chain:
    builder: ChainBuilder
    keys: dict[str, Key]
    txs: dict[str, Tx]


def _chain() -> Chain:
    """block 1: coinbase to A; block 2: A 50 -> X 30, Y 19.999; block 3: X 30 -> Z 10, W 19.999."""
    b = ChainBuilder()
    keys = {k: Key(k) for k in ("A", "X", "Y", "Z", "W", "V")}
    txs: dict[str, Tx] = {"cb": b.add_block(miner=keys["A"]).txs[0]}
    txs["t1"] = b.spend(
        [(txs["cb"].outpoint(0), keys["A"])],
        [TxOut(30 * BTC, keys["X"].p2pkh()), TxOut(19_999_000_000 // 10, keys["Y"].p2wpkh())],
    )
    b.add_block([txs["t1"]])
    txs["t2"] = b.spend(
        [(txs["t1"].outpoint(0), keys["X"])],
        [TxOut(10 * BTC, keys["Z"].p2pkh()), TxOut(1_999_900_000, keys["W"].p2pkh())],
    )
    b.add_block([txs["t2"]])
    return Chain(b, keys, txs)


def _ingest(con: duckdb.DuckDBPyConnection, raws: list[bytes]) -> None:
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    starts = np.r_[0, ends[:-1]].astype(np.int64)
    write_blocks(con, decode_blocks(buf, starts, ends, REGTEST), "test")


def _trace_request(ch: Chain) -> TraceRequest:
    return TraceRequest(CHAIN, f"{ch.txs['t1'].txid.hex()}:0", limits=Limits(hops=5))


def test_trace_snapshot_reruns_to_the_same_result(tmp_path: Path) -> None:
    w = _world(tmp_path / "snap.duckdb")
    con, u = w.con, w.users
    ch = _chain()
    _ingest(con, ch.builder.raw_blocks())
    cid = cases.create_case(con, u["a_inv"], "Trace")["case_id"]
    snap = cases.snapshot_trace(con, u["a_inv"], cid, _trace_request(ch), w.path, "X's 30 BTC")
    result = snap["result"]
    assert result["totals"]["seed_amount"] == 30 * BTC
    ends = {p["address"]: p["tainted_amount"] for p in result["endpoints"]}
    assert sorted(ends.values()) == [100_000, 10 * BTC, 1_999_900_000]  # t2's fee, Z and W
    assert result["totals"]["fees"] == 100_000
    tip_hash = ch.builder.tip.hash.hex()  # display order, as explorers show it
    assert snap["tip"] == {"height": 3, "hash": tip_hash}
    assert snap["params"]["seed"] == _trace_request(ch).seed and snap["params"]["limits"]["hops"] == 5
    assert snap["result_digest"] == audit.digest(result)

    again = cases.rerun_snapshot(con, u["a_ana"], cid, snap["snapshot_id"], w.path)
    assert (again["same"], again["tip_moved"], again["differences"]) == (True, False, [])
    assert again["saved_digest"] == again["rerun_digest"]
    assert again["result"] == result

    # the chain grows and Z moves the funds on: the re-run follows them, and says the tip moved
    ch.txs["t3"] = ch.builder.spend(
        [(ch.txs["t2"].outpoint(0), ch.keys["Z"])], [TxOut(999_990_000, ch.keys["V"].p2pkh())]
    )
    ch.builder.add_block([ch.txs["t3"]])
    _ingest(con, ch.builder.raw_blocks())
    moved = cases.rerun_snapshot(con, u["a_inv"], cid, snap["snapshot_id"], w.path)
    assert (moved["same"], moved["tip_moved"]) == (False, True)
    assert moved["current_tip"]["height"] == 4 and "endpoints" in moved["differences"]
    assert cases.get_snapshot(con, u["a_inv"], cid, snap["snapshot_id"])["result"] == result  # kept as saved
    # a screening-client may not trace; another organisation does not see the case
    with pytest.raises(PermissionDenied):
        cases.snapshot_trace(con, u["a_scr"], cid, _trace_request(ch), w.path)
    with pytest.raises(NotFound):
        cases.rerun_snapshot(con, u["b_inv"], cid, snap["snapshot_id"], w.path)
    w.con.close()


def test_screen_snapshot_reruns_to_the_same_result(tmp_path: Path) -> None:
    w = _world(tmp_path / "screen.duckdb")
    con, u = w.con, w.users
    ch = _chain()
    _ingest(con, ch.builder.raw_blocks())
    cid = cases.create_case(con, u["a_inv"], "Screen")["case_id"]
    txid = ch.txs["t2"].txid.hex()
    snap = cases.snapshot_screen(con, u["a_inv"], cid, CHAIN, [txid], title="deposit check")
    assert snap["result"][0]["txid"] == txid and snap["params"]["policy_source"] == "default"
    assert snap["tip"]["height"] == 3
    again = cases.rerun_snapshot(con, u["a_inv"], cid, snap["snapshot_id"])
    assert again["same"] and not again["tip_moved"]
    with pytest.raises(InvalidInput, match="cannot screen"):
        cases.snapshot_screen(con, u["a_inv"], cid, CHAIN, ["not-an-address"])
    w.con.close()


# --- case packages between two installations ------------------------------------------------------------


@dataclass
class Installations:
    a: World
    b: World
    case_id: int
    pkg: package.ExportedPackage
    key_a: signing.InstallationKey
    chain: Chain


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installations]:
    a = _world(tmp_path_factory.mktemp("a") / "a.duckdb")
    b = _world(tmp_path_factory.mktemp("b") / "b.duckdb")
    ch = _chain()
    for w in (a, b):
        _ingest(w.con, ch.builder.raw_blocks())
    u = a.users
    cid = cases.create_case(a.con, u["a_inv"], "Cross-border", "handed to fiu-b's country")["case_id"]
    cases.add_subject(a.con, u["a_inv"], cid, "tx", CHAIN, ch.txs["t2"].txid.hex(), "the split")
    cases.add_note(a.con, u["a_inv"], cid, "see the attached report", [("report.txt", b"exchange answer\n")])
    cases.snapshot_trace(a.con, u["a_inv"], cid, _trace_request(ch), a.path)
    key_a = signing.installation_key(a.path)
    pkg = package.export_case(a.con, u["a_inv"], cid, key_a)
    signing.trust_key(b.con, LOCAL_ADMIN, "fiu-a-installation", key_a.text)
    yield Installations(a, b, cid, pkg, key_a, ch)
    a.con.close()
    b.con.close()


def _import(two: Installations, data: bytes) -> dict[str, object]:
    return package.import_case(two.b.con, two.b.users["b_inv"], data, signing.installation_key(two.b.path))


def test_signing_key_file(two: Installations) -> None:
    path = signing.key_path(two.a.path)
    assert path.name == "a.duckdb.signing-key" and (path.stat().st_mode & 0o777) == 0o600
    assert signing.installation_key(two.a.path).public == two.key_a.public  # created once, then loaded
    assert signing.installation_key(two.b.path).public != two.key_a.public
    os.chmod(path, 0o644)
    try:
        with pytest.raises(Exception, match="chmod 600"):
            signing.load(path)
    finally:
        os.chmod(path, 0o600)


def test_package_contents(two: Installations) -> None:
    with zipfile.ZipFile(io.BytesIO(two.pkg.data)) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
        sig = zf.read("manifest.sig")
    assert names == {
        "case.json",
        "subjects.json",
        "notes.json",
        "snapshots.json",
        "audit.json",
        "attachments/1-report.txt",
        "manifest.json",
        "manifest.sig",
    }
    assert set(manifest["files"]) == names - {"manifest.json", "manifest.sig"}
    assert manifest["installation"] == {"id": two.key_a.fingerprint, "public_key": two.key_a.text}
    assert manifest["exporter"]["org"] == "fiu-a" and manifest["fundtrail_version"]
    assert len(sig) == 64
    assert signing.verifies(two.key_a.public, sig, _members(two.pkg.data)["manifest.json"])


def test_package_imports_into_another_installation(two: Installations) -> None:
    c = _import(two, two.pkg.data)
    assert c["org"] == "fiu-b" and c["status"] == "open" and c["title"] == "Cross-border"
    origin = c["origin"]
    assert isinstance(origin, dict)
    assert (origin["installation"], origin["signer"], origin["case_id"], origin["org"]) == (
        two.key_a.fingerprint,
        "fiu-a-installation",
        two.case_id,
        "fiu-a",
    )
    assert origin["package_sha256"] == two.pkg.sha256
    subjects, notes, snaps = c["subjects"], c["notes"], c["snapshots"]
    assert isinstance(subjects, list) and isinstance(notes, list) and isinstance(snaps, list)
    assert [(s["kind"], s["value"], s["added_by"]) for s in subjects] == [
        ("tx", two.chain.txs["t2"].txid.hex(), "a_inv@fiu-a")
    ]
    att = notes[0]["attachments"][0]
    assert (att["name"], att["sha256"]) == ("report.txt", hashlib.sha256(b"exchange answer\n").hexdigest())
    b_con, b_inv = two.b.con, two.b.users["b_inv"]
    assert cases.get_attachment(b_con, b_inv, c["case_id"], att["attachment_id"])[1] == b"exchange answer\n"
    # the snapshot re-runs on the importing installation's own copy of the chain to the same result
    rerun = cases.rerun_snapshot(b_con, b_inv, c["case_id"], snaps[0]["snapshot_id"], two.b.path)
    assert rerun["same"] and not rerun["tip_moved"]
    # fiu-a's users on installation B do not see fiu-b's imported case
    with pytest.raises(NotFound):
        cases.show_case(b_con, two.b.users["a_inv"], c["case_id"])
    assert audit.verify(b_con).ok
    assert audit.list_entries(b_con, limit=1, action="case.snapshot.rerun")["total"] == 1


def test_untrusted_signer_is_refused_with_the_trust_command(two: Installations, tmp_path: Path) -> None:
    stranger = _world(tmp_path / "stranger.duckdb")
    cid = cases.create_case(stranger.con, stranger.users["a_inv"], "From a stranger")["case_id"]
    key = signing.installation_key(stranger.path)
    pkg = package.export_case(stranger.con, stranger.users["a_inv"], cid, key)
    with pytest.raises(PermissionDenied) as exc:
        _import(two, pkg.data)
    assert f"fundtrail case trust NAME {key.text}" in exc.value.line()
    signing.trust_key(two.b.con, LOCAL_ADMIN, "stranger", key.text)
    try:
        assert _import(two, pkg.data)["title"] == "From a stranger"
    finally:
        signing.untrust_key(two.b.con, LOCAL_ADMIN, "stranger")
    with pytest.raises(PermissionDenied):
        _import(two, pkg.data)
    stranger.con.close()


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, (2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def _flip(data: bytes) -> bytes:
    i = len(data) // 2
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


PACKAGE_FILES = [
    "case.json",
    "subjects.json",
    "notes.json",
    "snapshots.json",
    "audit.json",
    "attachments/1-report.txt",
    "manifest.json",
    "manifest.sig",
]


@pytest.mark.parametrize("name", PACKAGE_FILES)
def test_one_flipped_byte_in_any_file_is_rejected_naming_it(two: Installations, name: str) -> None:
    members = _members(two.pkg.data)
    members[name] = _flip(members[name])
    cases_before = two.b.con.execute("SELECT count(*) FROM cases").fetchall()
    with pytest.raises(CorruptData) as exc:
        _import(two, _zip(members))
    assert name in exc.value.line() and "package rejected" in exc.value.line()
    assert two.b.con.execute("SELECT count(*) FROM cases").fetchall() == cases_before


def test_added_removed_and_raw_corrupted_files_are_rejected(two: Installations) -> None:
    added = {**_members(two.pkg.data), "attachments/2-extra.txt": b"slipped in"}
    with pytest.raises(CorruptData, match=r"attachments/2-extra.txt: is not in the manifest"):
        _import(two, _zip(added))
    for name in ("notes.json", "attachments/1-report.txt", "manifest.sig", "manifest.json"):
        removed = {k: v for k, v in _members(two.pkg.data).items() if k != name}
        with pytest.raises(CorruptData, match=f"{name}: .*missing"):
            _import(two, _zip(removed))
    # a byte flipped in the zip file itself, inside case.json's compressed data
    raw = two.pkg.data
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        info = zf.getinfo("case.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    corrupted = raw[: start + 5] + bytes([raw[start + 5] ^ 0xFF]) + raw[start + 6 :]
    with pytest.raises(CorruptData, match=r"case\.json"):
        _import(two, corrupted)
    with pytest.raises(CorruptData, match="not a zip"):
        _import(two, b"PK but not a zip")


def _signed(members: dict[str, bytes], manifest: dict[str, object], key: Ed25519PrivateKey) -> bytes:
    raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    return _zip({**members, "manifest.json": raw, "manifest.sig": key.sign(raw)})


def test_wrong_signature_is_rejected(two: Installations) -> None:
    members = _members(two.pkg.data)
    manifest = json.loads(members["manifest.json"])
    attacker = Ed25519PrivateKey.generate()
    # signed by another key but claiming installation A's key: the signature does not verify
    forged = {**members, "manifest.sig": attacker.sign(members["manifest.json"])}
    with pytest.raises(
        CorruptData, match=r"manifest.sig / manifest.json: the Ed25519 signature does not verify"
    ):
        _import(two, _zip(forged))
    # a changed attachment with a manifest re-signed by the attacker, who names their own key: untrusted
    pub = attacker.public_key().public_bytes_raw()
    members["attachments/1-report.txt"] = b"exchange answer, edited\n"
    manifest["files"]["attachments/1-report.txt"] = {  # type: ignore[index]
        "sha256": hashlib.sha256(members["attachments/1-report.txt"]).hexdigest(),
        "size": len(members["attachments/1-report.txt"]),
    }
    manifest["installation"] = {"id": signing.fingerprint(pub), "public_key": signing.public_text(pub)}
    with pytest.raises(PermissionDenied, match="not trusted"):
        _import(two, _signed(members, manifest, attacker))
    # the same edit signed by the trusted key but with the manifest left unchanged: the hash fails
    members = _members(two.pkg.data)
    members["attachments/1-report.txt"] = b"exchange answer, edited\n"
    with pytest.raises(CorruptData, match=r"attachments/1-report\.txt: its SHA-256"):
        _import(two, _zip(members))


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "/etc/cron.d/evil", "attachments/../../evil", "a\\..\\evil", "C:/x"]
)
def test_zip_slip_is_refused(two: Installations, evil: str) -> None:
    members = _members(two.pkg.data)
    manifest = json.loads(members["manifest.json"])
    members[evil] = b"payload"
    manifest["files"][evil] = {"sha256": hashlib.sha256(b"payload").hexdigest(), "size": 7}
    # even listed in a manifest signed with the trusted key itself
    with pytest.raises(CorruptData, match="unsafe member path"):
        _import(two, _signed(members, manifest, two.key_a.private))


def test_oversized_members_are_refused(two: Installations) -> None:
    members = {**_members(two.pkg.data), "attachments/9-huge.bin": bytes(package.MAX_MEMBER + 1)}
    data = _zip(members)
    assert len(data) < 1_000_000  # a zip bomb: small on disk, huge when read
    with pytest.raises(CorruptData, match=r"attachments/9-huge\.bin: oversized"):
        _import(two, data)


# --- the CLI ---------------------------------------------------------------------------------------------

runner = CliRunner()


def _cli(db: Path, *args: str) -> object:
    r = runner.invoke(app, ["--db", str(db), *args, "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    return json.loads(r.output)


def test_cli_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    ch = _chain()
    for db in (a, b):
        con = connect(db)
        _ingest(con, ch.builder.raw_blocks())
        con.close()
        _cli(db, "orgs", "create", "fiu-a")
        _cli(db, "orgs", "create", "fiu-b")
        _cli(db, "users", "create", "alice", "--org", "fiu-a", "--role", "investigator")
        _cli(db, "users", "create", "bruno", "--org", "fiu-b", "--role", "investigator")
    assert [o["name"] for o in _cli(a, "orgs", "list")] == ["fiu-a", "fiu-b"]  # type: ignore[attr-defined]
    users = _cli(a, "users", "list", "--org", "fiu-b")
    assert [(x["name"], x["role"]) for x in users] == [("bruno", "investigator")]  # type: ignore[attr-defined]
    assert _cli(a, "users", "set-role", "bruno", "analyst")["role"] == "analyst"  # type: ignore[index]

    key = _cli(a, "keys", "create", "--user", "alice", "--rate-limit", "7")
    assert isinstance(key, dict) and key["key"].startswith(f"ft_{key['key_id']}_")
    listed = _cli(a, "keys", "list")
    assert [(k["key_id"], k["rate_limit_per_s"], k["active"]) for k in listed] == [  # type: ignore[attr-defined]
        (key["key_id"], 7, True)
    ]
    assert key["key"] not in json.dumps(listed)
    con = connect(a)
    assert accounts.authenticate(con, key["key"]).user_name == "alice"
    con.close()
    assert _cli(a, "keys", "revoke", key["key_id"])["active"] is False  # type: ignore[index]

    case = _cli(a, "case", "create", "Cross-border", "--as", "alice", "--description", "d")
    assert isinstance(case, dict)
    cid = str(case["case_id"])
    _cli(a, "case", "add-subject", cid, "address", GENESIS_ADDRESS, "--chain", "bitcoin", "--as", "alice")
    evidence = tmp_path / "evidence.txt"
    evidence.write_bytes(b"the exchange's answer")
    note = _cli(a, "case", "note", cid, "KYC received", "--attach", str(evidence), "--as", "alice")
    assert note["attachments"][0]["name"] == "evidence.txt"  # type: ignore[index]
    _cli(a, "case", "assign", cid, "alice", "--as", "alice")
    assert _cli(a, "case", "status", cid, "in-progress", "--as", "alice")["status"] == "in-progress"  # type: ignore[index]
    shares = _cli(a, "case", "share", cid, "fiu-b", "--access", "read", "--as", "alice")
    assert [s["access"] for s in shares] == ["read"]  # type: ignore[attr-defined]
    seed = f"{ch.txs['t1'].txid.hex()}:0"
    snap = _cli(
        a, "case", "snapshot-trace", cid, "--from", seed, "--chain", CHAIN, "--hops", "3", "--as", "alice"
    )
    assert snap["result"]["totals"]["seed_amount"] == 30 * BTC  # type: ignore[index]
    scr = _cli(a, "case", "snapshot-screen", cid, ch.txs["t2"].txid.hex(), "--chain", CHAIN, "--as", "alice")
    for s in (snap, scr):
        rerun = _cli(a, "case", "rerun", cid, str(s["snapshot_id"]), "--as", "alice")  # type: ignore[index]
        assert rerun["same"] is True and rerun["tip_moved"] is False  # type: ignore[index]
    shown = _cli(a, "case", "show", cid, "--as", "bruno")
    assert shown["access"] == "read" and len(shown["snapshots"]) == 2  # type: ignore[index]
    assert [c["case_id"] for c in _cli(a, "case", "list", "--as", "bruno")["cases"]] == [int(cid)]  # type: ignore[index]

    exported = _cli(a, "case", "export", cid, "--as", "alice", "--out", str(tmp_path / "case.zip"))
    own = _cli(a, "case", "trust", "--own")
    assert exported["installation"]["public_key"] == own["public_key"]  # type: ignore[index]
    _cli(b, "case", "trust", "fiu-a-node", own["public_key"])  # type: ignore[index]
    assert [k["name"] for k in _cli(b, "case", "trust", "--list")] == ["fiu-a-node"]  # type: ignore[attr-defined]
    imported = _cli(b, "case", "import", str(tmp_path / "case.zip"), "--as", "bruno")
    assert imported["org"] == "fiu-b" and imported["origin"]["signer"] == "fiu-a-node"  # type: ignore[index]
    assert len(imported["snapshots"]) == 2 and imported["notes"][0]["text"] == "KYC received"  # type: ignore[index]

    verified = _cli(a, "audit", "verify")
    assert verified["ok"] is True and verified["entries"] > 10  # type: ignore[index]
    entries = _cli(a, "audit", "list", "--limit", "3")
    assert entries["truncated"] and entries["entries"][0]["action"] == "case.export"  # type: ignore[index]
    # errors: a one-line problem and fix
    _cli(a, "users", "set-role", "bruno", "investigator")
    r = runner.invoke(app, ["--db", str(a), "case", "note", cid, "x", "--as", "bruno"])
    assert isinstance(r.exception, PermissionDenied) and "read-only" in r.exception.line()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FUNDTRAIL_DB"}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "fundtrail", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    w = _world(tmp_path / "exit.duckdb")
    cid = cases.create_case(w.con, w.users["a_inv"], "Exit codes")["case_id"]
    w.con.execute("UPDATE audit_log SET target = 'case:999' WHERE seq = 3")
    w.con.close()
    db = str(tmp_path / "exit.duckdb")
    r = _run("--db", db, "audit", "verify")
    assert r.returncode == 4
    assert r.stderr.startswith("error: audit log broken at entry 3 (edited)") and r.stderr.count("\n") == 1
    r = _run("--db", db, "case", "note", str(cid), "x", "--as", "a_ana")
    assert r.returncode == 7 and "permission case.write" in r.stderr
    r = _run("--db", db, "case", "show", str(cid), "--as", "b_inv")
    assert (
        r.returncode == 3
        and r.stderr == f"error: no case {cid}: see `fundtrail case list` for the cases you can see\n"
    )

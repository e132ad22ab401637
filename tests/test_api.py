"""The REST API in process (FastAPI's TestClient, the real app on a real store): every route's happy path
on the small regtest world of tests/test_screening.py (real blocks, clusters, labels, exposure), answers
equal to the library's (the JSON of the CLI's --json), pagination, the case lifecycle across two
organisations, packages, private labels, accounts, the audit trail, and the one error shape."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fundtrail.api import ServiceSettings, create_app
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.chains.registry import chain as get_chain
from fundtrail.clustering import read as cluster_read
from fundtrail.labels.store import labels_for_address_ids
from fundtrail.platform import accounts
from fundtrail.screening.screen import Screener
from fundtrail.store import bitcoin_read
from fundtrail.store.db import connect
from fundtrail.tracing.engine import TraceRequest, trace
from tests.test_screening import CHAIN, World, _build, addr

USERS = (  # name, org, role
    ("alan", "agency", "admin"),
    ("ann", "agency", "investigator"),
    ("ana", "agency", "analyst"),
    ("sam", "agency", "screening-client"),
    ("bob", "exchange", "investigator"),
    ("bea", "exchange", "admin"),
    ("cid", "police", "investigator"),
)


@dataclass
class Env:
    path: Path
    world: World
    keys: dict[str, str]  # user -> API key
    key_ids: dict[str, str]
    expected: dict[str, Any]

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x))


def make_env(path: Path, rate_limit: int = 100_000) -> Env:
    """The regtest world with three organisations, their users and one API key each, and the answers the
    library gives (computed before the service opens the store)."""
    world = _build(path)
    con = connect(path)
    keys: dict[str, str] = {}
    key_ids: dict[str, str] = {}
    for org in sorted({o for _, o, _ in USERS}):
        accounts.create_org(con, org)
    for name, org, role in USERS:
        accounts.create_user(con, name, org, role)
        key_ids[name], keys[name] = accounts.create_key(con, name, rate_limit=rate_limit)
    mix = world.txids["mix"]
    alice = bitcoin_read.address(con, REGTEST, addr("alice"))
    c = get_chain(CHAIN)
    alice["cluster"] = cluster_read.address_cluster(con, c, alice["address_id"])
    alice["labels"] = labels_for_address_ids(con, CHAIN, [alice["address_id"]]).get(alice["address_id"], [])
    expected = {
        "summary": bitcoin_read.summary(con),
        "block0": bitcoin_read.block(con, REGTEST, "0"),
        "tx_mix": bitcoin_read.tx(con, REGTEST, mix),
        "alice": alice,
        "cluster_frank": cluster_read.cluster(con, c, addr("frank1")),
        "explain": cluster_read.explain(con, c, addr("frank1"), addr("frank2")),
        "screen_alice": Screener(con).screen_address(CHAIN, addr("alice")),
        "screen_tx": Screener(con).screen(CHAIN, world.txids["bob"]),
        "trace_mix": trace(con, TraceRequest(chain=CHAIN, seed=f"{mix}:0"), path),
    }
    con.close()
    return Env(path, world, keys, key_ids, _json(expected))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return make_env(tmp_path_factory.mktemp("api") / "api.duckdb")


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.path, ServiceSettings(max_body_bytes=64 * 1024))) as c:
        yield c


def assert_error(r: Any, status: int, field: str | None = None) -> dict[str, Any]:
    """The one error shape, with the status and (when given) the field."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"status", "code", "message", "fix", "field"}, err
    assert err["status"] == status and isinstance(err["message"], str) and err["message"]
    if field is not None:
        assert err["field"] == field, err
    return dict(err)


# --- chain data --------------------------------------------------------------------------------------------


def test_health_and_me(client: TestClient, env: Env) -> None:
    assert client.get("/v1/health").json()["status"] == "ok"
    me = client.get("/v1/me", headers=env.h("ann")).json()
    assert (me["user"], me["role"], me["key_id"]) == ("ann", "investigator", env.key_ids["ann"])
    assert "case.write" in me["permissions"] and "users.manage" not in me["permissions"]
    assert client.get("/openapi.json").json()["info"]["title"] == "fundtrail"
    assert client.get("/docs").status_code == 200


def test_chain_reads_equal_the_library(client: TestClient, env: Env) -> None:
    h, x = env.h("ana"), env.expected
    assert client.get("/v1/summary", headers=h).json() == {"chains": x["summary"]}
    assert client.get(f"/v1/{CHAIN}/blocks/0", headers=h).json() == x["block0"]
    by_hash = client.get(f"/v1/{CHAIN}/blocks/{x['block0']['hash']}", headers=h).json()
    assert by_hash == x["block0"]
    assert client.get(f"/v1/{CHAIN}/txs/{env.world.txids['mix']}", headers=h).json() == x["tx_mix"]
    a = client.get(f"/v1/{CHAIN}/addresses/{addr('alice')}", headers=h).json()
    assert a == x["alice"] and a["received"] == 50 * 100_000_000  # 10 mixer + 30 exchange + 10 change
    cl = client.get(f"/v1/{CHAIN}/clusters/{addr('frank1')}", headers=h).json()
    assert cl == x["cluster_frank"] and cl["size"] == 2
    by_id = client.get(f"/v1/{CHAIN}/clusters/{cl['cluster_id']}", headers=h).json()
    assert by_id["cluster_id"] == cl["cluster_id"]
    ex = client.get(
        f"/v1/{CHAIN}/explain-cluster", params={"a": addr("frank1"), "b": addr("frank2")}, headers=h
    ).json()
    assert ex == x["explain"] and ex["linked"] is True


def test_chain_read_errors_name_the_field(client: TestClient, env: Env) -> None:
    h = env.h("ana")
    assert_error(client.get("/v1/nochain/blocks/0", headers=h), 422, "path.chain")
    assert_error(client.get(f"/v1/{CHAIN}/blocks/999", headers=h), 404)
    assert_error(client.get(f"/v1/{CHAIN}/txs/zz", headers=h), 422, "path.txid")
    assert_error(client.get(f"/v1/{CHAIN}/txs/{'ab' * 32}", headers=h), 404)
    assert_error(client.get(f"/v1/{CHAIN}/addresses/1BoatSLRHtKNngkdXEeobR76b53LETtpyT", headers=h), 422)
    assert_error(client.get(f"/v1/{CHAIN}/clusters/{addr('alice')}", headers=h, params={"sample": -1}), 422)
    q = {"a": addr("frank1"), "b": "nope"}
    assert_error(client.get(f"/v1/{CHAIN}/explain-cluster", params=q, headers=h), 422, "query.b")


# --- screening and tracing ---------------------------------------------------------------------------------


def test_screen_single_equals_the_library_and_is_audited(client: TestClient, env: Env) -> None:
    r = client.post("/v1/screen", json={"chain": CHAIN, "item": addr("alice")}, headers=env.h("sam"))
    assert r.status_code == 200, r.text
    assert r.json() == env.expected["screen_alice"]
    assert r.json()["severity"] == "high"
    digest = hashlib.sha256(r.content).hexdigest()
    entries = client.get("/v1/audit", params={"action": "screen"}, headers=env.h("alan")).json()["items"]
    mine = [e for e in entries if e["result_digest"] == digest]
    assert (
        len(mine) == 1 and mine[0]["user_name"] == "sam" and mine[0]["target"] == f"{CHAIN}:{addr('alice')}"
    )
    t = client.post("/v1/screen", json={"chain": CHAIN, "item": env.world.txids["bob"]}, headers=env.h("sam"))
    assert t.json() == env.expected["screen_tx"]


def test_screen_batch_per_item_results_and_one_audit_entry(client: TestClient, env: Env) -> None:
    items = [addr("alice"), "not-an-address", addr("carol"), env.world.txids["sanct"]]
    before = client.get("/v1/audit", params={"action": "screen"}, headers=env.h("alan")).json()["total"]
    r = client.post("/v1/screen", json={"chain": CHAIN, "items": items}, headers=env.h("sam"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["chain"], body["count"], body["errors"]) == (CHAIN, 4, 1)
    res = body["results"]
    assert res[0] == env.expected["screen_alice"]
    assert res[1]["input"] == "not-an-address" and "error" in res[1] and res[1]["exit_code"] == 2
    assert (res[2]["severity"], res[2]["risk_score"]) == ("severe", 99)
    assert res[3]["txid"] == env.world.txids["sanct"] and res[3]["severity"] == "severe"
    after = client.get("/v1/audit", params={"action": "screen"}, headers=env.h("alan")).json()
    assert after["total"] == before + 1
    assert after["items"][0]["params"]["items"] == 4
    assert after["items"][0]["result_digest"] == hashlib.sha256(r.content).hexdigest()


def test_screen_errors(client: TestClient, env: Env) -> None:
    h = env.h("sam")
    assert_error(client.post("/v1/screen", json={"chain": CHAIN, "item": "xyz"}, headers=h), 422, "body.item")
    assert_error(client.post("/v1/screen", json={"chain": CHAIN}, headers=h), 422, "body.items")
    both = {"chain": CHAIN, "item": addr("alice"), "items": [addr("alice")]}
    assert_error(client.post("/v1/screen", json=both, headers=h), 422, "body.items")
    assert_error(
        client.post("/v1/screen", json={"chain": CHAIN, "items": [1]}, headers=h), 422, "body.items[0]"
    )
    assert_error(client.post("/v1/screen", json={"chain": "x", "item": "y"}, headers=h), 422, "body.chain")
    tx = {"chain": CHAIN, "item": "ab" * 32}
    assert_error(client.post("/v1/screen", json=tx, headers=h), 404)
    asset = {"chain": CHAIN, "item": addr("alice"), "asset": "USDT"}
    assert_error(client.post("/v1/screen", json=asset, headers=h), 422, "body.asset")


def test_trace_equals_the_library(client: TestClient, env: Env) -> None:
    seed = f"{env.world.txids['mix']}:0"
    r = client.post("/v1/trace", json={"chain": CHAIN, "seed": seed}, headers=env.h("ana"))
    assert r.status_code == 200, r.text
    assert r.json() == env.expected["trace_mix"]
    assert r.json()["totals"]["seed_amount"] == 10 * 100_000_000
    entries = client.get("/v1/audit", params={"action": "trace"}, headers=env.h("alan")).json()["items"]
    assert entries[0]["result_digest"] == hashlib.sha256(r.content).hexdigest()
    assert entries[0]["target"] == f"{CHAIN}:{seed}"
    h = env.h("ana")
    assert_error(client.post("/v1/trace", json={"chain": CHAIN, "seed": "x"}, headers=h), 422, "body.seed")
    bad = {"chain": CHAIN, "seed": seed, "hops": 1000}
    assert_error(client.post("/v1/trace", json=bad, headers=h), 422, "body.hops")
    bad = {"chain": CHAIN, "seed": seed, "since": "2024-01-01"}
    assert_error(client.post("/v1/trace", json=bad, headers=h), 422, "body.since")
    bad = {"chain": CHAIN, "seed": seed, "until": "yesterday"}
    assert_error(client.post("/v1/trace", json=bad, headers=h), 422, "body.until")
    bad = {"chain": CHAIN, "seed": seed, "policy": "magic"}
    assert_error(client.post("/v1/trace", json=bad, headers=h), 422, "body.policy")
    bad = {"chain": CHAIN, "seed": seed, "amount": 1.5}
    assert_error(client.post("/v1/trace", json=bad, headers=h), 422, "body.amount")


# --- labels ------------------------------------------------------------------------------------------------


def test_labels_pagination_is_explicit(client: TestClient, env: Env) -> None:
    h = env.h("ana")
    whole = client.get("/v1/labels", params={"chain": CHAIN, "limit": 1000}, headers=h).json()
    n = whole["total"]
    assert n >= 5 and len(whole["items"]) == n and whole["truncated"] is False and whole["next"] is None
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"chain": CHAIN, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        p = client.get("/v1/labels", params=params, headers=h).json()
        pages += 1
        seen += [lab["label_id"] for lab in p["items"]]
        assert p["total"] == n
        assert p["truncated"] is (p["next"] is not None)
        if not p["truncated"]:
            break
        cursor = p["next"]
    assert seen == [lab["label_id"] for lab in whole["items"]] and pages == (n + 1) // 2
    only = client.get("/v1/labels", params={"category": "sanctioned"}, headers=h).json()
    assert only["total"] == 2 and {lab["category"] for lab in only["items"]} == {"sanctioned"}
    one = client.get(f"/v1/labels/{seen[0]}", headers=h).json()
    assert one["label_id"] == seen[0]
    assert_error(client.get("/v1/labels", params={"limit": 5000}, headers=h), 422, "query.limit")
    assert_error(client.get("/v1/labels", params={"category": "nope"}, headers=h), 422, "query.category")


def test_label_changes_reach_screening_and_the_audit_log(client: TestClient, env: Env) -> None:
    eve = addr("eve")
    screen = {"chain": CHAIN, "item": eve}
    assert client.post("/v1/screen", json=screen, headers=env.h("sam")).json()["severity"] != "severe"
    new = {"chain": CHAIN, "address": eve, "label": "Eve (SDN)", "category": "sanctioned", "source": "t-sdn"}
    assert_error(client.post("/v1/labels", json=new, headers=env.h("ana")), 403)
    r = client.post("/v1/labels", json=new, headers=env.h("ann"))
    assert r.status_code == 201, r.text
    lab = r.json()
    assert (lab["address"], lab["category"]) == (eve, "sanctioned")
    hit = client.post("/v1/screen", json=screen, headers=env.h("sam")).json()
    assert (hit["severity"], hit["risk_score"]) == ("severe", 100)  # the snapshot reloaded
    edited = client.patch(
        f"/v1/labels/{lab['label_id']}", json={"category": "scam", "confidence": 50}, headers=env.h("ann")
    ).json()
    assert (edited["category"], edited["confidence"], edited["label"]) == ("scam", 50, "Eve (SDN)")
    assert client.post("/v1/screen", json=screen, headers=env.h("sam")).json()["severity"] != "severe"
    gone = client.delete(f"/v1/labels/{lab['label_id']}", headers=env.h("ann")).json()
    assert gone["label_id"] == lab["label_id"]
    assert_error(client.get(f"/v1/labels/{lab['label_id']}", headers=env.h("ann")), 404)
    actions = [
        e["action"]
        for e in client.get(
            "/v1/audit", params={"target": f"label:{lab['label_id']}"}, headers=env.h("alan")
        ).json()["items"]
    ]
    assert actions == ["label.delete", "label.edit", "label.add"]
    bad = {**new, "category": "wizardry"}
    assert_error(client.post("/v1/labels", json=bad, headers=env.h("ann")), 422, "body.category")
    bad = {**new, "address": "nope"}
    assert_error(client.post("/v1/labels", json=bad, headers=env.h("ann")), 422, "body.address")
    assert_error(client.patch("/v1/labels/1", json={}, headers=env.h("ann")), 422)


def test_private_labels_belong_to_one_organisation(client: TestClient, env: Env) -> None:
    new = {"chain": CHAIN, "address": addr("dave"), "category": "darknet_market", "label": "dave, our lead"}
    r = client.post("/v1/private-labels", json=new, headers=env.h("ann"))
    assert r.status_code == 201, r.text
    lid = r.json()["label_id"]
    mine = client.get("/v1/private-labels", headers=env.h("ana")).json()
    assert [x["label_id"] for x in mine["items"]] == [lid] and mine["total"] == 1
    theirs = client.get("/v1/private-labels", headers=env.h("bob")).json()
    assert theirs["items"] == [] and theirs["total"] == 0
    assert_error(client.patch(f"/v1/private-labels/{lid}", json={"label": "x"}, headers=env.h("bob")), 404)
    edited = client.patch(f"/v1/private-labels/{lid}", json={"label": "dave"}, headers=env.h("ann")).json()
    assert edited["label"] == "dave"
    assert client.delete(f"/v1/private-labels/{lid}", headers=env.h("ann")).json()["label_id"] == lid
    assert client.get("/v1/private-labels", headers=env.h("ana")).json()["total"] == 0


# --- cases and packages ------------------------------------------------------------------------------------


def test_case_lifecycle_across_organisations(client: TestClient, env: Env) -> None:
    ann, bob, cid_ = env.h("ann"), env.h("bob"), env.h("cid")
    r = client.post("/v1/cases", json={"title": "Mixer flows", "description": "from tip 7"}, headers=ann)
    assert r.status_code == 201, r.text
    case = r.json()
    cid = case["case_id"]
    assert (case["status"], case["title"]) == ("open", "Mixer flows")
    listed = client.get("/v1/cases", headers=ann).json()
    assert cid in [c["case_id"] for c in listed["items"]] and listed["truncated"] is False
    # another organisation does not see it: 404 exactly as for a case that does not exist
    hidden = assert_error(client.get(f"/v1/cases/{cid}", headers=bob), 404)
    never = assert_error(client.get("/v1/cases/999999", headers=bob), 404)
    assert hidden["message"].replace(str(cid), "N") == never["message"].replace("999999", "N")
    assert cid not in [c["case_id"] for c in client.get("/v1/cases", headers=bob).json()["items"]]
    # subjects, notes with an attachment, assignment, status
    s = client.post(
        f"/v1/cases/{cid}/subjects",
        json={"kind": "address", "chain": CHAIN, "value": addr("alice")},
        headers=ann,
    )
    assert s.status_code == 201, s.text
    bad = {"kind": "address", "chain": CHAIN, "value": "nope"}
    assert_error(client.post(f"/v1/cases/{cid}/subjects", json=bad, headers=ann), 422, "body.value")
    att = base64.b64encode(b"exchange answer, page 1").decode()
    note = {"text": "asked the exchange", "attachments": [{"name": "answer.txt", "content_base64": att}]}
    n = client.post(f"/v1/cases/{cid}/notes", json=note, headers=ann)
    assert n.status_code == 201, n.text
    aid = n.json()["attachments"][0]["attachment_id"]
    got = client.get(f"/v1/cases/{cid}/attachments/{aid}", headers=ann)
    assert got.content == b"exchange answer, page 1" and "answer.txt" in got.headers["content-disposition"]
    slip = {"text": "x", "attachments": [{"name": "../../etc/passwd", "content_base64": att}]}
    assert_error(
        client.post(f"/v1/cases/{cid}/notes", json=slip, headers=ann), 422, "body.attachments[0].name"
    )
    assigned = client.put(f"/v1/cases/{cid}/assignee", json={"user": "ana"}, headers=ann).json()
    assert assigned["case_id"] == cid
    assert client.put(f"/v1/cases/{cid}/status", json={"status": "in-progress"}, headers=ann).json()[
        "status"
    ] == ("in-progress")
    assert_error(
        client.put(f"/v1/cases/{cid}/status", json={"status": "done"}, headers=ann), 422, "body.status"
    )
    # snapshots: a trace and a screening, re-run to the same result
    seed = f"{env.world.txids['mix']}:0"
    st = client.post(f"/v1/cases/{cid}/snapshots/trace", json={"chain": CHAIN, "seed": seed}, headers=ann)
    assert st.status_code == 201, st.text
    assert st.json()["result"]["totals"] == env.expected["trace_mix"]["totals"]
    ss = client.post(
        f"/v1/cases/{cid}/snapshots/screen", json={"chain": CHAIN, "items": [addr("alice")]}, headers=ann
    )
    assert ss.status_code == 201, ss.text
    for snap in (st.json(), ss.json()):
        again = client.post(f"/v1/cases/{cid}/snapshots/{snap['snapshot_id']}/rerun", headers=ann).json()
        assert again["same"] is True and again["tip_moved"] is False
        shown = client.get(f"/v1/cases/{cid}/snapshots/{snap['snapshot_id']}", headers=ann).json()
        assert shown["result_digest"] == snap["result_digest"]
    # a read share: bob sees it, may not write; police still do not
    sh = client.put(f"/v1/cases/{cid}/shares/exchange", json={"access": "read"}, headers=ann)
    assert sh.status_code == 200 and sh.json()["shares"][0]["access"] == "read"
    seen = client.get(f"/v1/cases/{cid}", headers=bob).json()
    assert seen["case_id"] == cid and len(seen["subjects"]) == 1 and len(seen["snapshots"]) == 2
    assert_error(client.post(f"/v1/cases/{cid}/notes", json={"text": "mine"}, headers=bob), 403)
    assert_error(client.get(f"/v1/cases/{cid}", headers=cid_), 404)
    full = client.get(f"/v1/cases/{cid}", headers=ann).json()
    assert len(full["notes"]) == 1 and full["assignee"] is not None
    # the audit log holds the case's actions in order
    acts = [
        e["action"]
        for e in client.get("/v1/audit", params={"limit": 500}, headers=env.h("alan")).json()["items"]
    ]
    assert {
        "case.create",
        "case.subject.add",
        "case.note.add",
        "case.assign",
        "case.status",
        "case.share",
    } <= set(acts), acts


def test_package_export_import_and_tamper(client: TestClient, env: Env) -> None:
    ann, bob = env.h("ann"), env.h("bob")
    cid = client.post("/v1/cases", json={"title": "To hand over"}, headers=ann).json()["case_id"]
    client.post(
        f"/v1/cases/{cid}/subjects",
        json={"kind": "tx", "chain": CHAIN, "value": env.world.txids["sanct"]},
        headers=ann,
    )
    client.post(f"/v1/cases/{cid}/notes", json={"text": "sanctioned payer"}, headers=ann)
    assert_error(client.get(f"/v1/cases/{cid}/export", headers=bob), 404)
    r = client.get(f"/v1/cases/{cid}/export", headers=ann)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["x-package-sha256"] == hashlib.sha256(r.content).hexdigest()
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert {"manifest.json", "manifest.sig", "case.json", "subjects.json"} <= set(zf.namelist())
    zip_h = {**bob, "Content-Type": "application/zip"}
    imported = client.post("/v1/packages/import", content=r.content, headers=zip_h)
    assert imported.status_code == 201, imported.text
    new = imported.json()
    assert new["case_id"] != cid and new["title"] == "To hand over"
    assert [s["value"] for s in new["subjects"]] == [env.world.txids["sanct"]]
    assert client.get(f"/v1/cases/{new['case_id']}", headers=bob).json()["case_id"] == new["case_id"]
    assert_error(client.get(f"/v1/cases/{new['case_id']}", headers=ann), 404)
    # one flipped byte in one member: refused, naming the file
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as out:
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename == "subjects.json":
                data = data.replace(b"tx", b"TX", 1)
            out.writestr(info, data)
    err = assert_error(client.post("/v1/packages/import", content=tampered.getvalue(), headers=zip_h), 422)
    assert "subjects.json" in err["message"]
    assert_error(client.post("/v1/packages/import", content=b"PK\x03\x04junk", headers=zip_h), 422)
    assert_error(
        client.post("/v1/packages/import", content=r.content, headers={**bob, "Content-Type": "text/plain"}),
        415,
    )
    assert_error(
        client.post(
            "/v1/packages/import",
            content=r.content,
            headers={**env.h("ana"), "Content-Type": "application/zip"},
        ),
        403,
    )


# --- accounts and audit ------------------------------------------------------------------------------------


def test_admin_manages_users_and_keys(client: TestClient, env: Env) -> None:
    alan = env.h("alan")
    users = client.get("/v1/users", headers=alan).json()
    assert {u["name"] for u in users["items"]} == {"alan", "ann", "ana", "sam"}  # its own organisation only
    u = client.post("/v1/users", json={"name": "ada", "role": "analyst"}, headers=alan)
    assert u.status_code == 201 and u.json()["org"] == "agency"
    k = client.post("/v1/keys", json={"user": "ada", "rate_limit": 50}, headers=alan)
    assert k.status_code == 201, k.text
    key = k.json()["key"]
    assert key.startswith("ft_") and k.json()["shown_once"] is True
    ada = {"X-API-Key": key}
    assert client.get("/v1/me", headers=ada).json()["user"] == "ada"
    listed = client.get("/v1/keys", params={"user": "ada"}, headers=alan).json()["items"]
    assert [x["key_id"] for x in listed] == [k.json()["key_id"]] and key not in json.dumps(listed)
    promoted = client.put("/v1/users/ada/role", json={"role": "investigator"}, headers=alan).json()
    assert promoted["role"] == "investigator"
    assert client.get("/v1/me", headers=ada).json()["role"] == "investigator"  # no stale cached role
    revoked = client.delete(f"/v1/keys/{k.json()['key_id']}", headers=alan).json()
    assert revoked["active"] is False
    assert_error(client.get("/v1/me", headers=ada), 401)  # at once, not after the cache expires
    assert_error(client.get("/v1/users", headers=env.h("ann")), 403)
    assert_error(client.delete(f"/v1/keys/{env.key_ids['bob']}", headers=alan), 404)


def test_audit_verify(client: TestClient, env: Env) -> None:
    r = client.get("/v1/audit/verify", headers=env.h("alan"))
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["ok"] is True and v["entries"] > 10 and v["head"]["seq"] == v["entries"]
    assert_error(client.get("/v1/audit/verify", headers=env.h("ann")), 403)


# --- the one error shape -----------------------------------------------------------------------------------


def test_one_error_shape_everywhere(client: TestClient, env: Env) -> None:
    h = env.h("ann")
    assert_error(client.get("/v1/nothing-here/at/all/really", headers=h), 404)
    assert_error(client.get("/nowhere"), 404)
    assert_error(client.delete("/v1/screen", headers=h), 405)
    assert_error(client.get("/v1/me"), 401)
    js = {**h, "Content-Type": "application/json"}
    assert_error(client.post("/v1/screen", content=b'{"chain": ', headers=js), 400, "body")
    assert_error(client.post("/v1/screen", content=b"[1, 2]", headers=js), 422, "body")
    assert_error(
        client.post("/v1/screen", json={"chain": CHAIN, "item": "a", "x": 1}, headers=h), 422, "body.x"
    )
    assert_error(client.post("/v1/screen", content=b"x" * 70_000, headers=js), 413, "body")
    assert_error(client.get("/v1/labels", params={"cursor": "!!"}, headers=h), 422, "query.cursor")
    assert_error(client.get("/v1/cases/abc", headers=h), 422, "path.case_id")

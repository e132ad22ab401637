"""The service as it runs: ``fundtrail serve`` (a real uvicorn, in its own process) on a free loopback
port, over a store holding a generated UTXO graph (benchmarks/bench_trace.py's generator: 200,000
transactions) with a sanctions label and three users. Concurrent clients (httpx) screen, read and write
at once; screens keep answering while a long trace runs; the rate limit holds over HTTP; and the
server's own logs (uvicorn's access log and the service's) never contain a key."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from benchmarks import bench_trace

from fundtrail.chains.bitcoin.address import key_to_address
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.labels.store import add_label
from fundtrail.platform import accounts
from fundtrail.store.db import connect

CHAIN = bench_trace.CHAIN  # bitcoin-regtest
N_TX = 200_000
SANCTIONED = key_to_address(b"\x01" + bytes(range(20)), REGTEST)
UNSEEN = key_to_address(b"\x01" + bytes(range(1, 21)), REGTEST)


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    seed: str
    log: Path
    proc: subprocess.Popen[bytes]

    def h(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[user]}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("server")
    path = tmp / "served.duckdb"
    arrays = bench_trace.write_store(path, N_TX)
    con = connect(path)
    add_label(con, CHAIN, SANCTIONED, "SDN test entity", "sanctioned", 100, source="test-sdn")
    org = accounts.create_org(con, "agency")
    keys = {}
    for name, role, limit in (
        ("pipe", "screening-client", 100_000),
        ("ana", "analyst", 100_000),
        ("slow", "analyst", 2),
    ):
        accounts.create_user(con, name, org["org_id"], role)
        keys[name] = accounts.create_key(con, name, rate_limit=limit)[1]
    con.close()
    seed = f"{int(arrays[3][0]).to_bytes(32, 'big').hex()}:0"  # the first transaction that spends
    port = _free_port()
    log = tmp / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "FUNDTRAIL_DB"}
    argv = [sys.executable, "-m", "fundtrail", "--db", str(path), "serve", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)
    srv = Server(url, keys, seed, log, proc)
    # warm-up: the screening snapshot and the trace graph load once
    httpx.post(f"{url}/v1/screen", json={"chain": CHAIN, "item": UNSEEN}, headers=srv.h("pipe"), timeout=120)
    r = httpx.post(
        f"{url}/v1/trace", json={"chain": CHAIN, "seed": seed, "hops": 2}, headers=srv.h("ana"), timeout=300
    )
    assert r.status_code == 200, r.text
    yield srv
    proc.terminate()
    proc.wait(60)


def test_concurrent_clients_screen_and_read(server: Server) -> None:
    async def clients() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:

            async def one(i: int) -> tuple[int, str]:
                if i % 4 == 3:
                    r = await c.get("/v1/summary", headers=server.h("ana"))
                    return r.status_code, r.json()["chains"][0]["chain"]
                item = SANCTIONED if i % 2 else UNSEEN
                r = await c.post("/v1/screen", json={"chain": CHAIN, "item": item}, headers=server.h("pipe"))
                return r.status_code, r.json()["severity"]

            return await asyncio.gather(*(one(i) for i in range(200)))

    results = asyncio.run(clients())
    assert all(code == 200 for code, _ in results)
    for i, (_, what) in enumerate(results):
        expected = CHAIN if i % 4 == 3 else ("severe" if i % 2 else "unknown")
        assert what == expected, (i, what)


def test_screens_keep_answering_while_a_long_trace_runs(server: Server) -> None:
    trace_result: dict[str, object] = {}

    def long_trace() -> None:
        t = time.perf_counter()
        r = httpx.post(
            f"{server.url}/v1/trace",
            json={"chain": CHAIN, "seed": server.seed, "hops": 20},
            headers=server.h("ana"),
            timeout=600,
        )
        trace_result.update(
            status=r.status_code, seconds=time.perf_counter() - t, edges=len(r.json()["edges"])
        )

    th = threading.Thread(target=long_trace)
    th.start()
    time.sleep(0.2)  # the trace is under way
    latencies: list[float] = []
    with httpx.Client(base_url=server.url, headers=server.h("pipe"), timeout=60) as c:
        while th.is_alive():
            t = time.perf_counter()
            r = c.post("/v1/screen", json={"chain": CHAIN, "item": SANCTIONED})
            latencies.append(time.perf_counter() - t)
            assert r.status_code == 200 and r.json()["severity"] == "severe"
    th.join()
    assert trace_result["status"] == 200 and int(str(trace_result["edges"])) > 10_000
    seconds = float(str(trace_result["seconds"]))
    assert seconds > 1.0, trace_result  # a long trace: long enough to have blocked screening
    # screening went on the whole time, each answer in a small fraction of the trace's duration
    assert len(latencies) >= 20, (len(latencies), seconds)
    assert statistics.median(latencies) < 0.1 and max(latencies) < seconds / 2, (
        statistics.median(latencies),
        max(latencies),
        seconds,
    )


def test_writes_are_serialised_while_reads_run(server: Server) -> None:
    async def mixed() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:

            async def write(i: int) -> int:
                body = {
                    "chain": CHAIN,
                    "address": UNSEEN,
                    "label": f"lead {i}",
                    "category": "scam",
                    "source": "t",
                }
                r = await c.post("/v1/labels", json=body, headers=server.h("ana"))
                return r.status_code

            async def read() -> int:
                r = await c.get("/v1/labels", params={"chain": CHAIN, "limit": 5}, headers=server.h("ana"))
                return r.status_code

            return await asyncio.gather(*(write(i) if i % 3 == 0 else read() for i in range(60)))

    codes = asyncio.run(mixed())
    # analysts may not write labels: every write is refused, every read served, none fails
    assert sorted(set(codes)) == [200, 403]
    listed = httpx.get(
        f"{server.url}/v1/labels", params={"source": "t"}, headers=server.h("ana"), timeout=60
    ).json()
    assert listed["total"] == 0


def test_rate_limit_over_http(server: Server) -> None:
    with httpx.Client(base_url=server.url, headers=server.h("slow"), timeout=60) as c:
        codes = [c.get("/v1/me").status_code for _ in range(6)]
        assert codes[:2] == [200, 200] and 429 in codes
        r = c.get("/v1/me")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "rate_limited"


def test_keys_never_reach_the_server_logs(server: Server) -> None:
    key = server.keys["ana"]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/v1/me", headers={"X-API-Key": key}).status_code == 200
        c.get(f"/v1/me?api_key={key}", headers=server.h("ana"))  # a key in a query string
        c.get(f"/v1/{CHAIN}/addresses/{key}", headers=server.h("ana"))  # and in a path
        c.get("/v1/me", headers={"Authorization": f"Bearer {key[:-2]}00"})  # a wrong secret
        c.get("/v1/me", headers={"Authorization": f"Token {key}"})  # a wrong scheme
    time.sleep(0.5)
    text = server.log.read_text(errors="replace")
    assert '"GET /v1/me' in text and "POST /v1/screen" in text  # uvicorn's access log is on
    assert "GET /v1/me 200" in text  # and the service's own access line
    assert "ft_[redacted]" in text
    for k in server.keys.values():
        secret = k.split("_")[2]
        assert secret not in text and secret[:16] not in text

"""The REST API under load: ``POST /v1/screen`` on a store of more than a million clusters, served by
``fundtrail serve`` (uvicorn, one process) and loaded from a separate process over loopback.

Store: bench_screen's generator (1.5 million Bitcoin addresses in 1.2 million clusters, 12,000 labels,
exposure for 10% of the clusters) plus bench_trace's generated UTXO graph (``N_TRACE_TX`` transactions on
bitcoin-regtest, its address ids moved past the Bitcoin ones) for the trace, and one organisation with a
screening client's key and an analyst's key (rate limits high enough not to interfere).

Measured in the same run:

* ``api_screen``: requests per second and p50/p99 latency of single-address ``POST /v1/screen`` (key
  checked, rate-limited, screened, audited, answered) from ``CONNECTIONS`` keep-alive connections of an
  asyncio HTTP/1.1 client in its own process, for ``DURATION_S`` seconds after a one-second warm-up, the
  access logs off. Targets: >= 1,000 requests/s with p99 <= 20 ms. Reference: the in-process screener's
  own rate on the same addresses (``Screener.screen_address``, one thread), so ``ratio`` is what HTTP,
  authentication, the audit trail and JSON cost.
* ``api_screen_during_trace``: the same while another process loops ``POST /v1/trace`` (a 10-hop haircut
  trace forward from the graph's first spending transaction) back to back: the same targets.
* ``api_screen_access_logged``: ``api_screen`` with uvicorn's and the service's access lines on (two
  redacted log lines per request, written to a file), on a second start of the server.

The load client is a minimal asyncio HTTP/1.1 client (pre-built request bytes, Content-Length framing),
not httpx: httpx's asyncio client costs about 1 ms of CPU per request, so on this 2-core machine it would
saturate near 1,000 requests/s and measure itself (``--client httpx`` runs it for comparison).

``run()`` returns ``{"results": [line, line, line], "setup": {...}}``; ``setup`` holds the load average
before and after (the machine is shared: other jobs' load shows in the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import bench_screen  # noqa: E402
import bench_trace  # noqa: E402
from fundtrail.platform import accounts  # noqa: E402
from fundtrail.screening.screen import Screener  # noqa: E402
from fundtrail.store.db import connect  # noqa: E402

N_TRACE_TX = 500_000
TRACE_HOPS = 10
CONNECTIONS = 8
DURATION_S = 10.0
TARGET_RPS = 1_000.0
TARGET_P99_MS = 20.0
ADDRESS_SHIFT = 10_000_000  # trace-graph address ids start here (the Bitcoin ones end at 1.5 million)


# --- the store ---------------------------------------------------------------------------------------------


def build(path: Path) -> dict[str, Any]:
    setup = bench_screen.generate(path)
    t0 = time.perf_counter()
    arrays = bench_trace.write_store(path, N_TRACE_TX)
    con = connect(path)
    for table in ("tx_outputs", "tx_inputs"):
        con.execute(
            f"UPDATE {table} SET address_id = address_id + {ADDRESS_SHIFT} WHERE chain = ?",
            [bench_trace.CHAIN],
        )
    org = accounts.create_org(con, "bench")
    accounts.create_user(con, "pipeline", org["org_id"], "screening-client")
    accounts.create_user(con, "analyst", org["org_id"], "analyst")
    _, screen_key = accounts.create_key(con, "pipeline", rate_limit=1_000_000)
    _, trace_key = accounts.create_key(con, "analyst", rate_limit=1_000_000)
    con.close()
    seed_tx = int(arrays[3][0])  # the first transaction that spends something
    setup.update(
        trace_graph_txs=N_TRACE_TX,
        trace_graph_outputs=len(arrays[0]),
        trace_graph_inputs=len(arrays[3]),
        trace_setup_s=round(time.perf_counter() - t0, 2),
    )
    return {
        "setup": setup,
        "screen_key": screen_key,
        "trace_key": trace_key,
        "trace_seed": f"{seed_tx.to_bytes(32, 'big').hex()}:0",
    }


def reference(path: Path, items: list[str]) -> dict[str, Any]:
    """The in-process screener on the same addresses: one thread, no HTTP."""
    con = connect(path, read_only=True)
    try:
        s = Screener(con)
        s.view("bitcoin")
        lat = []
        t0 = time.perf_counter()
        for a in items:
            t = time.perf_counter()
            s.screen_address("bitcoin", a)
            lat.append(time.perf_counter() - t)
        total = time.perf_counter() - t0
    finally:
        con.close()
    return {"rps": len(items) / total, "p99_ms": _pct(lat, 99) * 1e3}


def _pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1] if len(samples) > 1 else samples[0]


# --- the server --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_server(path: Path, port: int, log: Path, access_log: bool) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "fundtrail", "--db", str(path), "serve", "--port", str(port)]
    argv += ["--log-level", "info" if access_log else "warning"]
    argv += [] if access_log else ["--no-access-log"]
    argv += os.environ.get("BENCH_SERVE_ARGS", "").split()  # e.g. "--trace-nice 0" to compare
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    f = log.open("wb")
    return subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env)


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the load clients (run in their own processes) ---------------------------------------------------------


async def _raw_load(port: int, key: str, items: list[str], seconds: float, conns: int) -> dict[str, Any]:
    bodies = [json.dumps({"chain": "bitcoin", "item": a}).encode() for a in items]
    head = (
        f"POST /v1/screen HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    requests = [head + b"Content-Length: " + str(len(b)).encode() + b"\r\n\r\n" + b for b in bodies]
    lat: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    warm = start + 1.0
    end = warm + seconds
    counter = 0

    async def worker(w: int) -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = w
        while True:
            t = time.perf_counter()
            if t >= end:
                break
            writer.write(requests[i % len(requests)])
            i += conns
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            status = int(head_bytes[9:12])
            length = 0
            for line in head_bytes.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if t >= warm:
                lat.append(time.perf_counter() - t)
                statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    await asyncio.gather(*(worker(w) for w in range(conns)))
    return _summary(lat, statuses, seconds)


async def _httpx_load(port: int, key: str, items: list[str], seconds: float, conns: int) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    warm, end = start + 1.0, start + 1.0 + seconds
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, headers=headers) as c:

        async def worker(w: int) -> None:
            i = w
            while (t := time.perf_counter()) < end:
                r = await c.post("/v1/screen", json={"chain": "bitcoin", "item": items[i % len(items)]})
                i += conns
                if t >= warm:
                    lat.append(time.perf_counter() - t)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        await asyncio.gather(*(worker(w) for w in range(conns)))
    return _summary(lat, statuses, seconds)


def _summary(lat: list[float], statuses: dict[int, int], seconds: float) -> dict[str, Any]:
    return {
        "requests": len(lat),
        "rps": len(lat) / seconds,
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": _pct(lat, 99) * 1e3,
        "max_ms": max(lat) * 1e3,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _trace_loop(port: int, key: str, seed: str, seconds: float) -> dict[str, Any]:
    import httpx

    body = {"chain": bench_trace.CHAIN, "seed": seed, "hops": TRACE_HOPS}
    took: list[float] = []
    statuses: dict[int, int] = {}
    edges = 0
    end = time.perf_counter() + seconds
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=300) as c:
        while time.perf_counter() < end:
            t = time.perf_counter()
            r = c.post("/v1/trace", json=body)
            took.append(time.perf_counter() - t)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                edges = len(r.json()["edges"])
    return {
        "traces": len(took),
        "mean_s": statistics.mean(took) if took else None,
        "max_s": max(took) if took else None,
        "edges": edges,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _spawn(*args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def _collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"load process failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# --- the run -----------------------------------------------------------------------------------------------


def _session(
    path: Path, built: dict[str, Any], items: list[str], items_file: Path, seconds: float, client: str,
    access_log: bool, with_trace: bool, setup: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Start the server, warm it up, load it (and, ``with_trace``, load it again while traces loop)."""
    import httpx

    port = free_port()
    log = path.parent / f"server-{'logged' if access_log else 'quiet'}.log"
    server = start_server(path, port, log, access_log)
    out: dict[str, Any] = {}
    try:
        wait_ready(port, server)
        t0 = time.perf_counter()  # warm-up: the screening snapshot and the trace graph load once
        h = {"Authorization": f"Bearer {built['screen_key']}"}
        url = f"http://127.0.0.1:{port}"
        body = {"chain": "bitcoin", "item": items[0]}
        httpx.post(f"{url}/v1/screen", json=body, headers=h, timeout=300).raise_for_status()
        setup.setdefault("snapshot_load_s", round(time.perf_counter() - t0, 2))
        t0 = time.perf_counter()
        trace_body = {"chain": bench_trace.CHAIN, "seed": built["trace_seed"], "hops": TRACE_HOPS}
        th = {"X-API-Key": built["trace_key"]}
        httpx.post(f"{url}/v1/trace", json=trace_body, headers=th, timeout=600).raise_for_status()
        setup.setdefault("first_trace_s", round(time.perf_counter() - t0, 2))
        load_args = ["--port", str(port), "--key", built["screen_key"], "--items", str(items_file)]
        load_args += ["--seconds", str(seconds), "--connections", str(CONNECTIONS), "--client", client]
        out["alone"] = _collect(_spawn("--load", *load_args))
        if with_trace:
            trace_args = ["--port", str(port), "--key", built["trace_key"], "--seed", built["trace_seed"]]
            tracer = _spawn("--trace-loop", *trace_args, "--seconds", str(seconds + 3.0))
            time.sleep(1.0)
            out["during"] = _collect(_spawn("--load", *load_args))
            out["traced"] = _collect(tracer)
    finally:
        stop(server)
    text = log.read_text(errors="replace")
    secrets = [k.split("_")[2] for k in (built["screen_key"], built["trace_key"])]
    setup["key_in_server_log"] = setup.get("key_in_server_log", False) or any(s in text for s in secrets)
    setup[f"server_log_lines_{'logged' if access_log else 'quiet'}"] = text.count("\n")
    return out


def _line(name: str, m: dict[str, Any], ref: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    ok = m["statuses"] == {"200": m["requests"]}
    return {
        "name": name,
        "ours": round(m["rps"]),
        "reference": round(ref["rps"]),
        "ratio": round(m["rps"] / ref["rps"], 3),
        **common,
        "p50_ms": round(m["p50_ms"], 2),
        "p99_ms": round(m["p99_ms"], 2),
        "max_ms": round(m["max_ms"], 1),
        "requests": m["requests"],
        "statuses": m["statuses"],
        "met": ok and m["rps"] >= TARGET_RPS and m["p99_ms"] <= TARGET_P99_MS,
    }


def run(quick: bool = False, client: str = "raw") -> dict[str, Any]:
    """Three lines: ``api_screen`` and ``api_screen_during_trace`` with the access logs off (the capacity of
    the hot path), ``api_screen_access_logged`` with uvicorn's and the service's access lines on (two log
    lines per request, redacted, written to a file)."""
    seconds = 4.0 if quick else DURATION_S
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "api.duckdb"
        built = build(path)
        setup = built["setup"]
        items = bench_screen._sample(path, 20_000, seed=3)
        ref = reference(path, items[:5_000])
        items_file = Path(tmp) / "items.json"
        items_file.write_text(json.dumps(items))
        setup["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
        quiet = _session(path, built, items, items_file, seconds, client, False, True, setup)
        logged = _session(path, built, items, items_file, seconds, client, True, False, setup)
        setup["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    common = {
        "unit": "requests/s",
        "reference_name": "the in-process screener (Screener.screen_address, one thread, no HTTP)",
        "target": TARGET_RPS,
        "target_p99_ms": TARGET_P99_MS,
        "connections": CONNECTIONS,
        "seconds": seconds,
        "client": "asyncio HTTP/1.1 (raw)" if client == "raw" else "httpx AsyncClient",
        "reference_p99_ms": round(ref["p99_ms"], 3),
    }
    alone = _line("api_screen", quiet["alone"], ref, {**common, "access_log": False})
    during = _line("api_screen_during_trace", quiet["during"], ref, {**common, "access_log": False})
    traced = quiet["traced"]
    during.update(
        traces_completed=traced["traces"],
        trace_mean_s=None if traced["mean_s"] is None else round(traced["mean_s"], 3),
        trace_max_s=None if traced["max_s"] is None else round(traced["max_s"], 3),
        trace_edges=traced["edges"],
        trace_statuses=traced["statuses"],
        trace=f"{TRACE_HOPS}-hop haircut forward, looped back to back",
    )
    during["met"] = during["met"] and traced["traces"] > 0
    logged_line = _line("api_screen_access_logged", logged["alone"], ref, {**common, "access_log": True})
    return {"results": [alone, during, logged_line], "setup": setup}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw")
    ap.add_argument("--load", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trace-loop", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int)
    ap.add_argument("--key")
    ap.add_argument("--items", type=Path)
    ap.add_argument("--seed")
    ap.add_argument("--seconds", type=float, default=DURATION_S)
    ap.add_argument("--connections", type=int, default=CONNECTIONS)
    a = ap.parse_args()
    if a.load:
        items = json.loads(a.items.read_text())
        load = _raw_load if a.client == "raw" else _httpx_load
        print(json.dumps(asyncio.run(load(a.port, a.key, items, a.seconds, a.connections))))
        return
    if a.trace_loop:
        print(json.dumps(_trace_loop(a.port, a.key, a.seed, a.seconds)))
        return
    res = run(quick=a.quick, client=a.client)
    for line in res["results"]:
        print(json.dumps({**line, "setup": res["setup"]}))


if __name__ == "__main__":
    main()

"""``fundtrail simulate``: build a world from a scenario and a seed, and write it all or nothing.

Output (``--out DIR``): ``bitcoin/blk*.dat`` (regtest), ``ethereum/{blocks,transactions,token_transfers}
.csv`` (chain ``sim-ethereum``), ``truth/`` (Parquet tables, ``labels.yaml``, ``manifest.json``) and
``cases/``. The world is written into ``DIR.partial`` and renamed at the end, so an interrupted run leaves
no half-written world behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time as wallclock
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fundtrail import __version__
from fundtrail.errors import InvalidInput
from fundtrail.simulate import typologies_account as ta
from fundtrail.simulate import typologies_utxo as tu
from fundtrail.simulate.background import Economy
from fundtrail.simulate.cases import BY_TYPOLOGY, write_cases
from fundtrail.simulate.scenario import TYPOLOGIES, Scenario
from fundtrail.simulate.world import BLOCK_SECONDS, BTC_CHAIN, ETH_CHAIN, World

GENERATORS = {
    "peeling_chain": tu.peeling_chain,
    "ransomware": tu.ransomware,
    "fan_out_fan_in": tu.fan_out_fan_in,
    "mixing": tu.mixing,
    "structuring": ta.structuring,
    "round_tripping": ta.round_tripping,
    "trade_disguise": ta.trade_disguise,
    "fast_cashout": ta.fast_cashout,
    "chain_hopping": ta.chain_hopping,
    "sanctions_evasion": ta.sanctions_evasion,
}
assert set(GENERATORS) == set(TYPOLOGIES)
DRAIN_LIMIT = 300  # blocks the world may run past its length for operations still under way

Progress = Callable[[int, int, int], None]  # (blocks done, blocks total, transactions so far)


@dataclass(frozen=True)
class SimSummary:
    out: Path
    scenario: str
    seed: int
    manifest: dict[str, Any]


def check_args(seed: int, out: Path, force: bool) -> None:
    """Refuse a negative seed or a non-empty output directory (before anything is written)."""
    if seed < 0:
        raise InvalidInput(f"seed {seed} is negative", "give a seed >= 0")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise InvalidInput(
            f"{out} exists and is not empty", "give a new --out directory, or --force to replace it"
        )


def simulate(
    scenario: Scenario, seed: int, out: Path, progress: Progress | None = None, force: bool = False
) -> SimSummary:
    check_args(seed, out, force)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = wallclock.perf_counter()
    w = World(scenario, seed, partial)
    econ = Economy(w)
    _run(w, econ, scenario, progress)
    w.btc.close()
    w.eth.close()
    w.write_ops()
    cases = write_cases(w, partial / "cases")
    _write_labels(w, partial / "truth" / "labels.yaml")
    w.truth.close()
    manifest = _manifest(w, scenario, seed, cases, wallclock.perf_counter() - started, partial)
    (partial / "truth" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return SimSummary(out, scenario.name, seed, manifest)


def _lognormal(w: World, spec: dict[str, float]) -> float:
    return float(spec["median"]) * math.exp(float(spec["sigma"]) * w.rng.gauss(0.0, 1.0))


def _plan(w: World, scenario: Scenario, blocks: int) -> list[tuple[int, str, str | None]]:
    """(start block, typology, case) of every operation: cases first, spread over the first 55 %."""
    plan = []
    for typology in TYPOLOGIES:
        n = int(scenario["laundering"][typology])
        case = BY_TYPOLOGY.get(typology)
        if scenario["cases"] and case is not None:
            n = max(n, 1)
        for i in range(n):
            start = w.rng.randint(max(2, blocks // 20), max(3, blocks * 55 // 100))
            plan.append(
                (start, typology, case.name if (case is not None and i == 0 and scenario["cases"]) else None)
            )
    plan.sort(key=lambda p: (p[0], p[1]))
    return plan


def _run(w: World, econ: Economy, scenario: Scenario, progress: Progress | None) -> None:
    btc, eth = w.btc, w.eth
    blocks = int(scenario["blocks"])
    warmup = int(scenario["warmup_blocks"])
    pools = w.pop.pools
    pool_cum = []
    acc = 0.0
    for _ in pools:
        acc += w.rng.uniform(1.0, 3.0)
        pool_cum.append(acc)
    total = warmup + blocks
    for h in range(warmup):
        pool = pools[h % len(pools)]
        assert pool.btc.home is not None
        w.time += BLOCK_SECONDS
        btc.end_block(w.time, pool.btc, pool.btc.home, 1)
        eth.end_tick(w.time)
        if progress and h % 20 == 0:
            progress(h + 1, total, btc.tx_count + eth.tx_count)
    econ.bootstrap()
    plan = _plan(w, scenario, blocks)
    btc_rate = float(scenario["bitcoin"]["tx_per_block"])
    eth_rate = float(scenario["ethereum"]["tx_per_block"])
    t = 0
    while t < blocks or (w.pending_ops and t < blocks + DRAIN_LIMIT):
        w.tick = t
        while plan and plan[0][0] <= t:
            _, typology, case = plan.pop(0)
            w.schedule(GENERATORS[typology](w, econ, case))
        active = t < blocks
        n_btc = int(w.nprng.poisson(btc_rate)) if active else 0
        n_eth = int(w.nprng.poisson(eth_rate)) if active else 0
        gas = max(1, int(_lognormal(w, scenario["ethereum"]["gas_price_gwei"]) * 10**9))
        eth.start_tick(n_eth + 4, BLOCK_SECONDS, gas)
        for _ in range(n_btc):
            econ.btc_event()
        for _ in range(n_eth):
            econ.eth_event()
        econ.btc_services()
        econ.eth_services()
        w.run_due()
        r = w.rng.random() * pool_cum[-1]
        pool = pools[next(i for i, c in enumerate(pool_cum) if c >= r)]
        assert pool.btc.home is not None
        w.time += BLOCK_SECONDS
        fee_rate = max(1, int(_lognormal(w, scenario["bitcoin"]["fee_rate"])))
        btc.end_block(w.time, pool.btc, pool.btc.home, fee_rate)
        eth.end_tick(w.time)
        t += 1
        if progress and (t % 5 == 0 or t >= blocks):
            progress(min(warmup + t, total), total, btc.tx_count + eth.tx_count)


def _write_labels(w: World, path: Path) -> None:
    """What an investigator would know: exchanges (hot and cold wallets), mixers, the bridge, the DEX,
    OTC desks, mining pools, and the sanctioned entities' listed addresses, as a GraphSense TagPack."""
    tags: list[dict[str, Any]] = []
    p = w.pop

    def tag(chain: str, address: str, label: str, category: str, **extra: Any) -> None:
        currency = "BTC" if chain == BTC_CHAIN else "ETH"
        tags.append({"address": address, "currency": currency, "network": chain, "label": label,
                     "category": category, "confidence": "service_data", **extra})  # fmt: skip

    for ex in p.exchanges:
        for wal in (ex.hot, ex.cold):
            assert wal.home is not None
            tag(BTC_CHAIN, w.btc_text(wal.home), ex.actor.name, "exchange")
        tag(ETH_CHAIN, w.eth.text(ex.eth_hot), ex.actor.name, "exchange")
    for m in p.mixers:
        assert m.actor.btc.home is not None
        tag(BTC_CHAIN, w.btc_text(m.actor.btc.home), m.actor.name, "mixing_service")
    assert p.bridge.btc.home is not None and p.bridge.eth is not None and p.dex.eth is not None
    tag(BTC_CHAIN, w.btc_text(p.bridge.btc.home), p.bridge.name, "bridge")
    tag(ETH_CHAIN, w.eth.text(p.bridge.eth), p.bridge.name, "bridge")
    tag(ETH_CHAIN, w.eth.text(p.dex.eth), p.dex.name, "defi_dex")
    for o in p.otc:
        assert o.btc.home is not None and o.eth is not None
        tag(BTC_CHAIN, w.btc_text(o.btc.home), o.name, "exchange")
        tag(ETH_CHAIN, w.eth.text(o.eth), o.name, "exchange")
    for pool in p.pools:
        assert pool.btc.home is not None
        tag(BTC_CHAIN, w.btc_text(pool.btc.home), pool.name, "miner")
    for op in w.ops:
        listed = op.briefing.get("listed_address")
        if op.typology == "sanctions_evasion" and isinstance(listed, str):
            tag(BTC_CHAIN, listed, w.actors[op.actor].name, "organization", abuse="sanction")
    doc = {
        "title": "fundtrail simulated world: known services and sanctioned entities",
        "creator": "fundtrail simulate",
        "description": "What an investigator of this world would know from public attribution sources.",
        "is_public": True,
        "tags": tags,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def _manifest(
    w: World, scenario: Scenario, seed: int, cases: list[str], seconds: float, root: Path
) -> dict[str, Any]:
    files = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.name != "manifest.json":
            with f.open("rb") as fh:  # streamed: the large world's exports are gigabytes
                files[str(f.relative_to(root))] = hashlib.file_digest(fh, "sha256").hexdigest()
    return {
        "fundtrail": __version__,
        "scenario": scenario.name,
        "seed": seed,
        "parameters": scenario.doc,
        "chains": {
            BTC_CHAIN: {
                "blocks": w.btc.height,
                "tip": w.btc.blocks.tip_hash.hex(),
                "transactions": w.btc.tx_count,
            },
            ETH_CHAIN: {"blocks": w.eth.blocks, "transactions": w.eth.tx_count},
        },
        "transactions": w.btc.tx_count + w.eth.tx_count,
        "actors": len(w.actors),
        "operations": dict(sorted(Counter(op.typology for op in w.ops).items())),
        "operations_cut_short": w.cut_short,
        "cases": cases,
        "truth_rows": w.truth.counts,
        "generation_seconds": round(seconds, 2),
        "transactions_per_second": round((w.btc.tx_count + w.eth.tx_count) / max(seconds, 1e-9)),
        "files": files,
    }

"""Training cases: named operations with a briefing (what the trainee is told) and an answer key (what
the trainee should find), written to ``DIR/cases/<name>/``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fundtrail.simulate.world import Op, World


@dataclass(frozen=True)
class Case:
    name: str
    typology: str
    title: str
    brief: str  # the situation, with {placeholders} filled from the operation's briefing


CASES: tuple[Case, ...] = (
    Case(
        "exchange-hack",
        "peeling_chain",
        "Hot-wallet theft at {victim}",
        "{victim} reports that {amount_btc} BTC left its hot wallet without authorisation at {when} in "
        "transaction `{theft_tx}` (output 0 went to the thief). Follow the stolen funds, find where they "
        "were cashed out and which exchanges to send freezing requests to, with amounts.",
    ),
    Case(
        "ransomware",
        "ransomware",
        "Ransom payments of a ransomware group",
        "Three victims of the same ransomware strain gave their payment outputs: {victims}. Find the "
        "group's wallet, where the ransoms were pooled, and where the money went.",
    ),
    Case(
        "romance-scam-usdt",
        "fast_cashout",
        "Romance scam paid in USDT",
        'A victim reports sending USDT to an "investment platform" at {collection} (transactions '
        "{victim_payments}). Find other victims, and the exchange accounts the scammer cashed out to.",
    ),
    Case(
        "trade-front",
        "trade_disguise",
        "Front companies invoicing each other in USDT",
        "Customs suspect trading companies paying each other in USDT with no goods moving. The first "
        "company's address is {front0}. Map the fronts, the invoice pattern and where the money ended.",
    ),
    Case(
        "sanctions-evasion",
        "sanctions_evasion",
        "A sanctioned group trading through an OTC desk",
        "The sanctions list names the address {listed_address}. Find what it moved, through whom it was "
        "exchanged, and where the proceeds surfaced on the account chain.",
    ),
)
BY_TYPOLOGY = {c.typology: c for c in CASES}


def _fields(w: World, op: Op) -> dict[str, str]:
    b = op.briefing
    f = {k: str(v) for k, v in b.items() if isinstance(v, str | int)}
    if "amount" in b and isinstance(b["amount"], int):
        f["amount_btc"] = f"{b['amount'] / 1e8:,.8f}"
    when = b.get("time", op.start_time)
    f["when"] = datetime.fromtimestamp(when if isinstance(when, int) else op.start_time, UTC).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    victims = b.get("victim_payments")
    if isinstance(victims, list):
        f["victims"] = ", ".join(f"`{v}`" for v in victims[:3])
        f["victim_payments"] = ", ".join(f"`{v}`" for v in victims[:1])
    fronts = b.get("fronts")
    if isinstance(fronts, list) and fronts:
        f["front0"] = f"`{fronts[0]}`"
    for key in ("collection", "listed_address"):
        if key in f:
            f[key] = f"`{f[key]}`"
    return f


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "(not recorded)"


def write_cases(w: World, out: Path) -> list[str]:
    """One folder per case whose operation ran: briefing.md and answer_key.json."""
    written = []
    for op in w.ops:
        case = next((c for c in CASES if c.name == op.case), None)
        if case is None or not op.cashouts:
            continue
        d = out / case.name
        d.mkdir(parents=True, exist_ok=True)
        fields = _fields(w, op)
        brief, title = case.brief.format_map(_Missing(fields)), case.title.format_map(_Missing(fields))
        (d / "briefing.md").write_text(
            f"# {title}\n\n{brief}\n\nChains: `bitcoin-regtest`, `sim-ethereum`. Labels of known services "
            "are in `truth/labels.yaml` (import them first). "
            "Do not open `answer_key.json` before you finish.\n"
        )
        key = {
            "case": case.name,
            "operation_id": op.id,
            "typology": op.typology,
            "description": op.description,
            "perpetrator": w.actors[op.actor].name,
            "amount": str(op.amount),
            "asset": op.asset,
            "seeds": [
                {"leg": leg, "chain": c, "seed": s, "asset": a, "amount": str(v)}
                for leg, c, s, a, v in op.seeds
            ],
            "cashouts": [
                {
                    "leg": leg,
                    "chain": c,
                    "asset": a,
                    "address": addr,
                    "owner": w.actors[actor].name,
                    "txid": tx,
                    "amount": str(v),
                }
                for leg, c, a, addr, actor, tx, v in op.cashouts
            ],
            "addresses": [{"chain": c, "address": a, "role": r} for c, a, r in dict.fromkeys(op.addresses)],
            "transactions": [{"chain": c, "txid": t, "role": r} for c, t, r in op.txs],
        }
        (d / "answer_key.json").write_text(json.dumps(key, indent=2) + "\n")
        written.append(case.name)
    return written

"""The clustering configuration: which heuristics run, with what limits.

Read from the ``[clustering]`` table of the TOML configuration (``--config``, ``FUNDTRAIL_CONFIG`` or
``./fundtrail.toml``); command-line options override single keys. The default is what GraphSense does:
multi-input only on Bitcoin (CoinJoins excluded), and the deposit-address heuristic on account chains;
every change heuristic and the same-funder and airdrop-collector patterns are opt-in.

The effective configuration is stored with the clusters; a run under a different configuration
recomputes the chain from scratch (clusters built under mixed rules would be neither).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from fundtrail.errors import InvalidInput
from fundtrail.settings import config_table

CHANGE_RULES = ("one_time", "round_number", "optimal", "address_type", "address_reuse", "fingerprint")
ACCOUNT_RULES = ("deposit_address", "same_funder", "airdrop_collector")
DEFAULT_MAX_CLUSTER_SIZE = 10_000


@dataclass(frozen=True)
class ClusterConfig:
    """``change``: change heuristics to apply (names from :data:`CHANGE_RULES`); ``payjoin_aware``:
    leave PayJoin candidates out of multi-input; ``coinjoin_exclusion``: leave detected CoinJoins out of
    multi-input (GraphSense's default, on); ``account``: account-chain heuristics; ``max_cluster_size``:
    a merge by any heuristic other than multi-input that would make a cluster larger is refused and
    reported; ``exclude_txs``: txids an analyst has ruled out (an undetected CoinJoin or PayJoin)."""

    change: tuple[str, ...] = ()
    payjoin_aware: bool = False
    coinjoin_exclusion: bool = True
    account: tuple[str, ...] = ("deposit_address",)
    max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE
    exclude_txs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _check_names("change", self.change, CHANGE_RULES)
        _check_names("account", self.account, ACCOUNT_RULES)
        if self.max_cluster_size < 2:
            raise InvalidInput(
                f"max_cluster_size {self.max_cluster_size} is below 2",
                "give a cluster size limit of at least 2 (default 10000)",
            )
        for t in self.exclude_txs:
            if len(t) != 64 or any(c not in "0123456789abcdef" for c in t.lower()):
                raise InvalidInput(f"exclude_txs entry {t!r} is not a txid", "give 64 hex digits per txid")

    def key(self) -> str:
        """A canonical JSON text of the configuration (stored with the clusters)."""
        d = asdict(self)
        d["change"] = sorted(self.change)
        d["account"] = sorted(self.account)
        d["exclude_txs"] = sorted(t.lower() for t in self.exclude_txs)
        return json.dumps(d, sort_keys=True)

    def with_overrides(self, **kw: Any) -> ClusterConfig:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


def _check_names(key: str, names: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    for n in names:
        if n not in allowed:
            raise InvalidInput(f"unknown {key} heuristic {n!r}", f"choose from {', '.join(allowed)}")


def parse_list(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated option value (``one_time,optimal``); ``none`` or empty means no heuristic."""
    if text is None:
        return None
    items = tuple(s.strip() for s in text.split(",") if s.strip())
    return () if items == ("none",) else items


def load(path: Path | None) -> ClusterConfig:
    """The ``[clustering]`` table of ``path`` (defaults when None or when the table is absent)."""
    if path is None:
        return ClusterConfig()
    table = config_table(path, "clustering", "write it as a [clustering] section")
    known = {f for f in ClusterConfig.__dataclass_fields__}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InvalidInput(
            f"{path}: unknown [clustering] key {unknown[0]!r}", f"valid keys: {', '.join(sorted(known))}"
        )
    kw: dict[str, Any] = {}
    for k, v in table.items():
        expected = ClusterConfig.__dataclass_fields__[k].type
        if k in ("change", "account", "exclude_txs"):
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise InvalidInput(
                    f"{path}: [clustering] {k} must be a list of strings", f'e.g. {k} = ["..."]'
                )
            kw[k] = tuple(v)
        elif k in ("payjoin_aware", "coinjoin_exclusion"):
            if not isinstance(v, bool):
                raise InvalidInput(f"{path}: [clustering] {k} must be true or false", f"write {k} = true")
            kw[k] = v
        else:
            if not isinstance(v, int) or isinstance(v, bool):
                raise InvalidInput(
                    f"{path}: [clustering] {k} must be an integer ({expected})", f"write {k} = 10000"
                )
            kw[k] = v
    return ClusterConfig(**kw)

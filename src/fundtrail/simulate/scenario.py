"""Scenario files: every parameter of a simulated world, in YAML, checked strictly.

``fundtrail simulate --scenario NAME|FILE``: a NAME is a bundled preset (``small``, ``large``); a FILE is a
YAML file of the same shape. A file may give only some keys: the rest come from the preset named by its
``base:`` key (default ``small``). Unknown keys, wrong types and out-of-range values are refused with the
key's path, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fundtrail.errors import InvalidInput

PRESETS = ("small", "large")
TYPOLOGIES = (
    "peeling_chain",
    "ransomware",
    "structuring",
    "fan_out_fan_in",
    "mixing",
    "chain_hopping",
    "round_tripping",
    "trade_disguise",
    "fast_cashout",
    "sanctions_evasion",
)


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: dict[str, Any]  # the merged, checked document

    def __getitem__(self, key: str) -> Any:
        return self.doc[key]

    def get(self, *path: str) -> Any:
        node: Any = self.doc
        for p in path:
            node = node[p]
        return node


def _preset_doc(name: str) -> dict[str, Any]:
    text = resources.files("fundtrail.simulate").joinpath("scenarios", f"{name}.yaml").read_text()
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def _merge(base: dict[str, Any], over: dict[str, Any], path: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        where = f"{path}.{k}" if path else k
        if k not in base:
            raise InvalidInput(
                f"unknown scenario key {where!r}", f"use one of {', '.join(base)} (see docs/simulator.md)"
            )
        if isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise InvalidInput(f"scenario key {where!r} must be a mapping", "see docs/simulator.md")
            out[k] = _merge(base[k], v, where)
        else:
            out[k] = v
    return out


def _check(doc: dict[str, Any], ref: dict[str, Any], path: str) -> None:
    for k, v in doc.items():
        where = f"{path}.{k}" if path else k
        expect = ref[k]
        if isinstance(expect, dict):
            _check(v, expect, where)
            continue
        if isinstance(expect, bool):
            ok = isinstance(v, bool)
        elif isinstance(expect, int):
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif isinstance(expect, float):
            ok = isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        else:
            ok = isinstance(v, str)
        if not ok:
            kind = type(expect).__name__
            raise InvalidInput(
                f"scenario key {where!r} is {v!r}",
                f"give a non-negative {kind}" if kind != "str" else "give text",
            )
    for k in ("mix",):
        for chain in ("bitcoin", "ethereum"):
            if path == "" and not any(doc[chain][k].values()):
                raise InvalidInput(f"scenario key '{chain}.{k}' has no positive weight", "give one")


def load_scenario(spec: str) -> Scenario:
    """A preset name or a YAML file path."""
    if spec in PRESETS:
        return Scenario(spec, _preset_doc(spec))
    path = Path(spec)
    if not path.exists():
        raise InvalidInput(
            f"scenario {spec!r} is neither a preset nor a file",
            f"use one of {', '.join(PRESETS)} or a YAML path",
        )
    try:
        over = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid YAML ({exc})".replace("\n", " "), "fix the file") from None
    if not isinstance(over, dict):
        raise InvalidInput(f"{path} is not a scenario (a YAML mapping)", "see docs/simulator.md")
    base_name = over.pop("base", "small")
    if base_name not in PRESETS:
        raise InvalidInput(f"{path}: base {base_name!r} is not a preset", f"use one of {', '.join(PRESETS)}")
    base = _preset_doc(base_name)
    doc = _merge(base, over, "")
    _check(doc, base, "")
    return Scenario(str(doc.get("name", path.stem)), doc)

"""The detection configuration: parameter overrides per detector and the reference prices.

Read from the TOML configuration (``--config``, ``FUNDTRAIL_CONFIG`` or ``./fundtrail.toml``)::

    [detection.peeling_chain]      # one table per detector, keys are its parameter names
    min_hops = 6

    [detection.prices_usd]         # USD per whole coin, by symbol (detection/prices.py has the defaults)
    BTC = 65000

An unknown detector, an unknown parameter or a value of the wrong type is refused with a one-line error
(a typo must not silently leave the default in force). A parameter whose default is an integer takes an
integer; one whose default is a number takes an integer or a float; a text parameter takes a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fundtrail.detection.base import Detector, Param
from fundtrail.detection.prices import DEFAULT_PRICES_USD
from fundtrail.errors import InvalidInput
from fundtrail.settings import config_table

Overrides = Mapping[str, Mapping[str, Any]]  # detector -> parameter -> value


@dataclass(frozen=True)
class DetectionConfig:
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # overrides, checked
    prices_usd: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES_USD))


def check_value(where: str, p: Param, value: Any) -> int | float | str:
    """``value`` for parameter ``p`` (type of its default), or InvalidInput."""
    if isinstance(p.default, str):
        if isinstance(value, str):
            return value
        want = "a string"
    elif isinstance(p.default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        want = "an integer"
    else:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        want = "a number"
    raise InvalidInput(
        f"{where}: {p.name} = {value!r} is not {want}",
        f"give {want} ({p.unit}; default {p.default!r})",
    )


def check_overrides(
    detectors: Mapping[str, Detector], overrides: Overrides, where: str
) -> dict[str, dict[str, Any]]:
    """Overrides keyed by known detectors and parameters, values of the right type."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in overrides.items():
        det = detectors.get(name)
        if det is None:
            have = ", ".join(detectors) or "none"
            raise InvalidInput(f"{where}: unknown detector {name!r}", f"configure one of: {have}")
        if not isinstance(table, Mapping):
            raise InvalidInput(
                f"{where}: [detection.{name}] must be a table", f"write it as [detection.{name}]"
            )
        params = {p.name: p for p in det.params}
        checked: dict[str, Any] = {}
        for key, value in table.items():
            p = params.get(key)
            if p is None:
                valid = ", ".join(params) or "none (it has no parameters)"
                raise InvalidInput(
                    f"{where}: unknown parameter {key!r} of detector {name}", f"valid parameters: {valid}"
                )
            checked[key] = check_value(f"{where} [detection.{name}]", p, value)
        out[name] = checked
    return out


def effective(det: Detector, overrides: Overrides | None = None) -> dict[str, Any]:
    """The detector's parameters: defaults, overridden."""
    values: dict[str, Any] = {p.name: p.default for p in det.params}
    values.update((overrides or {}).get(det.name, {}))
    return values


def _prices(path: Path, table: Any) -> dict[str, float]:
    if not isinstance(table, Mapping):
        raise InvalidInput(f"{path}: [detection.prices_usd] must be a table", "write BTC = 65000 lines in it")
    prices = dict(DEFAULT_PRICES_USD)
    for sym, v in table.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise InvalidInput(
                f"{path}: [detection.prices_usd] {sym} = {v!r} is not a positive number", f"write {sym} = 1.0"
            )
        prices[str(sym).upper()] = float(v)
    return prices


def load(path: Path | None, detectors: Mapping[str, Detector]) -> DetectionConfig:
    """The ``[detection]`` tables of ``path`` (defaults when None or absent), checked against
    ``detectors`` (every detector that exists, not only those about to run)."""
    if path is None:
        return DetectionConfig()
    table = config_table(path, "detection", "write [detection.<detector>] sections")
    prices = _prices(path, table["prices_usd"]) if "prices_usd" in table else dict(DEFAULT_PRICES_USD)
    rest = {k: v for k, v in table.items() if k != "prices_usd"}
    return DetectionConfig(check_overrides(detectors, rest, str(path)), prices)


def merge(base: Overrides, extra: Overrides | None) -> dict[str, dict[str, Any]]:
    """``extra``'s values over ``base``'s, per detector."""
    out = {k: dict(v) for k, v in base.items()}
    for k, v in (extra or {}).items():
        out.setdefault(k, {}).update(v)
    return out


def describe(det: Detector) -> list[dict[str, Any]]:
    """The parameters of a detector as JSON rows (``detect --list``)."""
    return [{"name": p.name, "default": p.default, "unit": p.unit, "help": p.help} for p in det.params]

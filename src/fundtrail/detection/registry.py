"""The detectors fundtrail has: every module of :mod:`fundtrail.detection.detectors` that exposes
``DETECTOR``, found with :mod:`pkgutil` (adding a detector is adding a module), checked once.

A detector is valid when its ``name`` is its module's name, its ``typology`` and ``summary`` are
non-empty, its ``families`` are chain families fundtrail knows (``bitcoin``, ``evm``, ``tron``), its
parameters have unique names, and it has a ``run`` method. An invalid detector is a bug of that module:
:func:`discover` raises ``TypeError`` naming it (never a silently missing detector).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping, Sequence
from types import ModuleType

from fundtrail.chains.registry import CHAINS
from fundtrail.detection import detectors as detectors_package
from fundtrail.detection.base import Detector, Param
from fundtrail.errors import InvalidInput

FAMILIES: frozenset[str] = frozenset(c.family for c in CHAINS.values())
RESERVED = frozenset({"prices_usd"})  # keys of [detection] that are not detectors
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

_cache: dict[str, Detector] | None = None


def validate(module_name: str, det: object) -> Detector:
    """``det`` as a :class:`Detector`, or ``TypeError`` saying what is wrong with module ``module_name``."""

    def bad(what: str) -> TypeError:
        return TypeError(f"detector module {module_name!r}: {what}")

    name = getattr(det, "name", None)
    if name != module_name:
        raise bad(f"DETECTOR.name is {name!r}, not the module's name")
    if not _NAME.fullmatch(module_name) or module_name in RESERVED:
        raise bad("the name must be lower-case letters, digits and '_' (and not 'prices_usd')")
    for attr in ("typology", "summary"):
        value = getattr(det, attr, None)
        if not isinstance(value, str) or not value.strip():
            raise bad(f"DETECTOR.{attr} must be a non-empty string")
    families = getattr(det, "families", None)
    if not isinstance(families, frozenset) or not families:
        raise bad("DETECTOR.families must be a non-empty frozenset of chain families")
    unknown = sorted(str(f) for f in families - FAMILIES)
    if unknown:
        raise bad(f"unknown chain families {unknown} (known: {', '.join(sorted(FAMILIES))})")
    params = getattr(det, "params", None)
    if not isinstance(params, tuple) or not all(isinstance(p, Param) for p in params):
        raise bad("DETECTOR.params must be a tuple of Param")
    names = [p.name for p in params]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise bad(f"parameter names repeat: {', '.join(dupes)}")
    for p in params:
        if isinstance(p.default, bool) or not isinstance(p.default, int | float | str):
            raise bad(f"parameter {p.name!r} has a default of type {type(p.default).__name__}")
        if not p.unit or not p.help:
            raise bad(f"parameter {p.name!r} needs a unit and a help text")
    if not callable(getattr(det, "run", None)):
        raise bad("DETECTOR has no run(ctx) method")
    return det  # type: ignore[return-value]


def _modules(package: ModuleType) -> list[tuple[str, ModuleType]]:
    out: list[tuple[str, ModuleType]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        out.append((info.name, importlib.import_module(f"{package.__name__}.{info.name}")))
    return out


def discover(package: ModuleType = detectors_package) -> dict[str, Detector]:
    """Every valid detector of ``package`` by name, in name order (cached for the default package). A
    module without ``DETECTOR`` is skipped (a helper module)."""
    global _cache
    if package is detectors_package and _cache is not None:
        return _cache
    found: dict[str, Detector] = {}
    for name, module in _modules(package):
        det = getattr(module, "DETECTOR", None)
        if det is not None:
            found[name] = validate(name, det)
    if package is detectors_package:
        _cache = found
    return found


def available() -> list[str]:
    """The names of every detector."""
    return list(discover())


def parse_names(text: str | None) -> list[str] | None:
    """A ``--detectors a,b`` value as names (None: every detector)."""
    if text is None:
        return None
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise InvalidInput("--detectors is empty", "name detectors separated by commas, or leave it out")
    return names


def get(names: Sequence[str] | None = None) -> list[Detector]:
    """The detectors named (in the order given, each once), or every detector when ``names`` is None;
    an unknown name is an :class:`InvalidInput` naming the available ones."""
    every: Mapping[str, Detector] = discover()
    if names is None:
        return list(every.values())
    out: list[Detector] = []
    for n in names:
        if n not in every:
            have = ", ".join(every) or "none (no detector modules are installed)"
            raise InvalidInput(f"unknown detector {n!r}", f"choose from {have}")
        if every[n] not in out:
            out.append(every[n])
    return out

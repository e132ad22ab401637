"""Risk policies: which exposure to which category is how severe, and the 0-100 risk score.

A policy is a YAML document (read with PyYAML's safe loader, checked strictly)::

    version: 1                      # the policy format; this fundtrail reads 1
    name: acme-deposits-2024-06     # recorded in every screening result, with the file's SHA-256
    rules:
      - id: mixer-indirect          # optional, unique; default <category>-<scope>-<direction>
        category: mixer             # a taxonomy category, or a list of them
        scope: indirect             # self | direct | indirect, or a list
        direction: received         # received | sent | any (self: any)
        min_share: 0.10             # optional: at least this share (0..1) of the cluster's flow
        min_amount: 0               # optional: at least this amount, in base units of the asset
        severity: high              # severe | high | medium | low | none

*Scopes*: ``self`` fires on the screened address's own labels and its cluster's definer labels (the
address *is* a mixer); ``direct`` on value exchanged with a cluster of the category in one hop;
``indirect`` on value that reached it (or left it) through intermediaries, within the exposure's hop limit.
A rule without ``min_share`` and ``min_amount`` fires on any amount; with both, both must hold.

*Score* (:func:`score_of`): the firing rule's severity gives a base and a span, and the share of the
flow the rule fired on moves the score up its span: ``score = base + floor(span * share)`` with
severe 90+9, high 70+19, medium 40+29, low 10+29, none 0. A ``self`` rule uses the label's confidence
(0-100, unknown: 0) as its share. The result's score is the highest of its firing rules, and its
severity the band of that score: 90-100 severe, 70-89 high, 40-69 medium, 10-39 low, 0-9 none. Score
100 is reserved for sanctions (:data:`SANCTIONS_SCORE`): an address on a sanctions list, or in a cluster
with one, is severe 100 whatever the policy says (screen.py applies it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fundtrail.errors import InvalidInput
from fundtrail.labels.taxonomy import CATEGORIES

FORMAT_VERSION = 1
SEVERITIES = ("severe", "high", "medium", "low", "none")
SCOPES = ("self", "direct", "indirect")
DIRECTIONS = ("received", "sent", "any")
# severity -> (base score, span): score = base + floor(span * share), share in 0..1
SCORE_BANDS: dict[str, tuple[int, int]] = {
    "severe": (90, 9),
    "high": (70, 19),
    "medium": (40, 29),
    "low": (10, 29),
    "none": (0, 0),
}
SANCTIONS_SCORE = 100  # only the sanctions rule gives 100
SANCTIONS_CATEGORY = "sanctioned"
DEFAULT_POLICY = "default_policy.yaml"

_TOP_KEYS = {"version", "name", "description", "rules"}
_RULE_KEYS = {"id", "category", "scope", "direction", "min_share", "min_amount", "severity", "note"}


@dataclass(frozen=True)
class Rule:
    """One rule, for one category, scope and direction (a YAML rule naming lists expands to several)."""

    id: str
    index: int  # position in the file's rule list
    category: str
    scope: str
    direction: str  # received | sent | any
    severity: str
    min_share: float | None = None
    min_amount: int | None = None

    def fires(self, amount: int, share: float) -> bool:
        if self.min_amount is not None and amount < self.min_amount:
            return False
        return not (self.min_share is not None and share < self.min_share)


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    rules: tuple[Rule, ...]
    source: str  # the file path, or "default"
    sha256: str  # of the document's bytes
    description: str | None = None
    _index: dict[tuple[str, str, str], tuple[Rule, ...]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str, str], list[Rule]] = {}
        for r in self.rules:
            directions = ("received", "sent") if r.direction == "any" else (r.direction,)
            for d in directions:
                index.setdefault((r.scope, r.category, d), []).append(r)
        self._index.update({k: tuple(v) for k, v in index.items()})

    def rules_for(self, scope: str, category: str, direction: str) -> tuple[Rule, ...]:
        """The rules of a scope, category and direction (received/sent; ``self`` rules under "any")."""
        return self._index.get((scope, category, direction), ())

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source, "sha256": self.sha256}


def score_of(severity: str, share: float) -> int:
    """The 0-100 score of a rule of ``severity`` firing on ``share`` (0..1) of the flow."""
    base, span = SCORE_BANDS[severity]
    return base + math.floor(span * min(max(share, 0.0), 1.0))


def band_of(score: int) -> str:
    """The severity band a score falls in."""
    for sev in SEVERITIES:
        if score >= SCORE_BANDS[sev][0]:
            return sev
    return "none"


def _fail(where: str, problem: str, fix: str) -> InvalidInput:
    return InvalidInput(f"{where}: {problem}", fix)


def _names(value: Any, where: str, allowed: Iterable[str], what: str) -> list[str]:
    allowed = tuple(allowed)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _fail(where, f"empty list of {what}s", f"give at least one of {', '.join(allowed)}")
    out: list[str] = []
    for v in items:
        if not isinstance(v, str):
            raise _fail(
                where, f"{v!r} is a {type(v).__name__}, not a {what} name", f"use {', '.join(allowed)}"
            )
        if v not in allowed:
            raise _fail(where, f"unknown {what} {v!r}", f"use one of {', '.join(allowed)}")
        out.append(v)
    return out


def _rules(raw: Any, where: str) -> tuple[Rule, ...]:
    if not isinstance(raw, list):
        raise _fail(
            f"{where}: rules", f"is a {type(raw).__name__}, not a list", "give `rules:` as a YAML list"
        )
    rules: list[Rule] = []
    seen: set[str] = set()
    given_ids: set[str] = set()  # the ids as written: a list rule's expanded ids would not collide
    for i, r in enumerate(raw):
        at = f"{where}: rules[{i}]"
        if not isinstance(r, dict):
            raise _fail(at, f"is a {type(r).__name__}, not a mapping", "give each rule as `- category: ...`")
        unknown = sorted(set(map(str, r)) - _RULE_KEYS)
        if unknown:
            raise _fail(at, f"unknown field {unknown[0]!r}", f"use only {', '.join(sorted(_RULE_KEYS))}")
        for key in ("category", "scope", "severity"):
            if key not in r:
                raise _fail(at, f"missing field {key!r}", f"add `{key}:` to the rule")
        cats = _names(r["category"], f"{at}.category", CATEGORIES, "category")
        scopes = _names(r["scope"], f"{at}.scope", SCOPES, "scope")
        severity = r["severity"]
        if not isinstance(severity, str) or severity not in SEVERITIES:
            raise _fail(
                f"{at}.severity", f"unknown severity {severity!r}", f"use one of {', '.join(SEVERITIES)}"
            )
        direction = r.get("direction", "any")
        if not isinstance(direction, str) or direction not in DIRECTIONS:
            raise _fail(
                f"{at}.direction", f"unknown direction {direction!r}", f"use one of {', '.join(DIRECTIONS)}"
            )
        min_share = r.get("min_share")
        if min_share is not None:
            if isinstance(min_share, bool) or not isinstance(min_share, int | float):
                raise _fail(
                    f"{at}.min_share", f"{min_share!r} is not a number", "give a share from 0 to 1, e.g. 0.1"
                )
            if not 0.0 <= float(min_share) <= 1.0 or math.isnan(float(min_share)):
                raise _fail(
                    f"{at}.min_share",
                    f"{min_share} is outside 0..1",
                    "give a share from 0 to 1 (10% is 0.1)",
                )
            min_share = float(min_share)
        min_amount = r.get("min_amount")
        if min_amount is not None:
            if isinstance(min_amount, bool) or not isinstance(min_amount, int):
                raise _fail(
                    f"{at}.min_amount",
                    f"{min_amount!r} is not an integer",
                    "give an integer amount in base units (satoshi, wei, token units)",
                )
            if min_amount < 0:
                raise _fail(f"{at}.min_amount", f"{min_amount} is negative", "give 0 or more base units")
        if "self" in scopes and (direction != "any" or min_share is not None or min_amount is not None):
            raise _fail(
                at,
                "a `self` rule has no direction or thresholds (it fires on the address's own labels)",
                "drop direction/min_share/min_amount, or put `self` in a rule of its own",
            )
        rid = r.get("id")
        if rid is not None and (not isinstance(rid, str) or not rid.strip()):
            raise _fail(f"{at}.id", f"{rid!r} is not a name", "give a short text id, e.g. mixer-indirect")
        if isinstance(rid, str):
            if rid.strip() in given_ids:
                raise _fail(f"{at}.id", f"duplicate rule id {rid.strip()!r}", "give each rule a different id")
            given_ids.add(rid.strip())
        for cat in cats:
            for scope in scopes:
                name = rid.strip() if isinstance(rid, str) else f"{cat}-{scope}-{direction}"
                if len(cats) * len(scopes) > 1 and isinstance(rid, str):
                    name = f"{rid.strip()}:{cat}-{scope}"
                if name in seen and not isinstance(rid, str):
                    name = f"{name}#{i}"  # an unnamed rule repeating another's key: its index tells
                if name in seen:
                    raise _fail(f"{at}.id", f"duplicate rule id {name!r}", "give each rule a different id")
                seen.add(name)
                rules.append(Rule(name, i, cat, scope, direction, severity, min_share, min_amount))
    return tuple(rules)


def parse_policy(text: bytes | str, source: str) -> Policy:
    """A policy from YAML text; ``source`` names it in errors (a path, or "default")."""
    data = text.encode() if isinstance(text, str) else text
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{source}: not valid YAML{where}: {problem}", "fix the YAML syntax") from None
    if not isinstance(doc, dict):
        raise InvalidInput(
            f"{source}: a policy is a YAML mapping, not {type(doc).__name__}",
            "start the file with `version: 1` and `rules:`",
        )
    unknown = sorted(set(map(str, doc)) - _TOP_KEYS)
    if unknown:
        raise InvalidInput(
            f"{source}: unknown field {unknown[0]!r}", f"use only {', '.join(sorted(_TOP_KEYS))}"
        )
    version = doc.get("version")
    if version is None:
        raise InvalidInput(f"{source}: missing field 'version'", f"add `version: {FORMAT_VERSION}`")
    if isinstance(version, bool) or version != FORMAT_VERSION:
        raise InvalidInput(
            f"{source}: version: unsupported policy version {version!r}",
            f"this fundtrail reads `version: {FORMAT_VERSION}`",
        )
    name = doc.get("name", Path(source).stem if source != "default" else "default")
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(
            f"{source}: name: {name!r} is not a name", "give the policy a name, e.g. name: acme"
        )
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidInput(f"{source}: description: is not text", "give a text description or leave it out")
    if "rules" not in doc:
        raise InvalidInput(f"{source}: missing field 'rules'", "add `rules:` with at least one rule")
    rules = _rules(doc["rules"], source)
    return Policy(name.strip(), FORMAT_VERSION, rules, source, hashlib.sha256(data).hexdigest(), description)


def load_policy(path: Path | None = None) -> Policy:
    """The policy in ``path``, or the shipped default policy (``default_policy.yaml``)."""
    if path is None:
        return default_policy()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"policy file {path} does not exist", "check the --policy path") from None
    except OSError as exc:
        raise InvalidInput(f"policy file {path} cannot be read ({exc.strerror})", "check the path") from None
    return parse_policy(data, str(path))


def default_policy() -> Policy:
    data = resources.files("fundtrail.screening").joinpath(DEFAULT_POLICY).read_bytes()
    return parse_policy(data, "default")


@dataclass(frozen=True)
class Finding:
    """A rule that fired: on exposure (``direct``/``indirect``: amount and share of a direction) or on a
    label of the address or its cluster (``self``: the label's confidence stands in for the share)."""

    rule: Rule
    score: int
    amount: int | None
    share: float | None
    direction: str | None  # received | sent; None for self
    label: dict[str, Any] | None = None


def evaluate_exposure(policy: Policy, exposure: dict[str, Any]) -> list[Finding]:
    """The rules firing on a cluster's exposure ``{"direct"|"indirect": {CATEGORY: {"received","sent",
    "share_received","share_sent"}}}``, highest score first (severity ``none`` rules are left out)."""
    out: list[Finding] = []
    for scope in ("direct", "indirect"):
        for category, v in (exposure.get(scope) or {}).items():
            for d in ("received", "sent"):
                amount = int(v.get(d) or 0)
                if amount <= 0:
                    continue
                share = float(v.get(f"share_{d}") or 0.0)
                for rule in policy.rules_for(scope, category, d):
                    if rule.severity != "none" and rule.fires(amount, share):
                        out.append(Finding(rule, score_of(rule.severity, share), amount, share, d))
    out.sort(key=lambda f: (-f.score, f.rule.index, f.rule.id))
    return out


def evaluate_labels(policy: Policy, labels: Iterable[dict[str, Any]]) -> list[Finding]:
    """The ``self`` rules firing on labels (one finding per rule: its most confident label)."""
    best: dict[str, Finding] = {}
    for lab in labels:
        share = (lab.get("confidence") or 0) / 100
        for rule in policy.rules_for("self", str(lab["category"]), "received"):
            if rule.severity == "none":
                continue
            f = Finding(rule, score_of(rule.severity, share), None, share, None, lab)
            if rule.id not in best or f.score > best[rule.id].score:
                best[rule.id] = f
    return sorted(best.values(), key=lambda f: (-f.score, f.rule.index, f.rule.id))

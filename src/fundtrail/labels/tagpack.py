"""GraphSense TagPacks (YAML) -> labels.

A TagPack is a YAML mapping of pack-level fields (``title``, ``creator``, ``description``, ``source``,
``currency``, ``category``, ``label``, ``abuse``, ``confidence``, ``lastmod``, ``is_cluster_definer``,
``actor``, ``context`` ...) and a ``tags`` list; each tag inherits every pack-level field it does not set
itself. Parsed with PyYAML's ``CSafeLoader`` (libyaml).

Each pack file is one label source, ``tagpack:<file stem>``: importing it again replaces all its labels.
Mapping: category from (category, abuse) per :func:`fundtrail.labels.taxonomy.from_tagpack`; confidence
from the named level per :data:`fundtrail.labels.taxonomy.TAGPACK_CONFIDENCE`; ``lastmod`` (the date the
pack's authors last vouched for the tag) becomes ``last_seen``; ``first_seen`` is unknown. The context
keeps the pack (``tagpack``, ``title``, ``creator``), the upstream ``source`` URL, the declared
``currency``, the original ``tagpack_category``/``tagpack_abuse``/``tagpack_confidence``, ``actor``,
``concepts`` and the tag's own ``context`` (parsed when it is JSON).

A tag whose ``network`` names a chain of fundtrail's registry (``bitcoin-regtest``, ``sim-ethereum`` ...)
is parsed on that chain: simulated worlds and test networks are labelled this way.
A tag is skipped, with its reason counted, when it has no address, no currency or no label, when its
address does not parse on a chain fundtrail ingests (after detecting the chain from the format, see
:mod:`fundtrail.labels.addresses`), or when it repeats an earlier tag of the same pack (same chain,
address, label and category).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import yaml

from fundtrail.chains.registry import CHAINS
from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.labels.addresses import resolve, resolve_on
from fundtrail.labels.report import ImportProgress, ProgressFn, SourceReport, no_progress, skip_reason
from fundtrail.labels.store import LabelRows, SourceImport, replace_sources
from fundtrail.labels.taxonomy import from_tagpack, tagpack_confidence

IMPORTER = "tagpack"
PACK_SUFFIXES = (".yaml", ".yml")
_NOT_INHERITED = frozenset({"tags", "description", "is_public"})


def source_name(path: Path) -> str:
    return f"tagpack:{path.stem}"


def pack_files(path: Path) -> list[Path]:
    """The pack files at ``path``: the file itself, or every ``*.yaml``/``*.yml`` below a directory."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in PACK_SUFFIXES and p.is_file())
        if not files:
            raise InvalidInput(f"no TagPack files (*.yaml) under {path}", "give a pack file or its directory")
        return files
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist", "give a TagPack file or a directory of packs")
    return [path]


def _date(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    if isinstance(value, str):
        try:
            return _date(dt.date.fromisoformat(value.strip()[:10]))
        except ValueError:
            return None
    return None


def _tag_context(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_pack(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise CorruptData(f"{path} is not valid YAML ({exc})", "fix the pack file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tags"), list):
        raise CorruptData(f"{path} is not a TagPack (no `tags:` list)", "give a GraphSense TagPack file")
    return doc


def pack_rows(path: Path, doc: dict[str, Any]) -> tuple[LabelRows, SourceReport]:
    """The label rows of one parsed pack, and what was skipped."""
    source = source_name(path)
    report = SourceReport(source, IMPORTER, str(path))
    rows = LabelRows()
    header = {k: v for k, v in doc.items() if k not in _NOT_INHERITED}
    seen: set[tuple[str, bytes | str, str, str]] = set()
    cache: dict[tuple[str, str], Any] = {}
    dates: dict[Any, dt.datetime | None] = {}
    stem = path.stem
    for tag in doc["tags"]:
        if not isinstance(tag, dict):
            report.skipped["tag is not a mapping"] += 1
            continue
        t = {**header, **tag}
        address, currency, label = t.get("address"), t.get("currency"), t.get("label")
        if address is None or not str(address).strip():
            report.skipped["no address"] += 1
            continue
        if currency is None or not str(currency).strip():
            report.skipped["no currency"] += 1
            continue
        if label is None or not str(label).strip():
            report.skipped["no label"] += 1
            continue
        address, currency, label = str(address), str(currency), str(label).strip()
        network = t.get("network")
        on_chain = str(network) if network is not None and str(network) in CHAINS else None
        ck = (on_chain or currency, address)
        r = cache.get(ck)
        if r is None:
            try:
                r = resolve_on(on_chain, address, False) if on_chain else resolve(currency, address, False)
            except InvalidInput as exc:
                r = exc
            cache[ck] = r
        if isinstance(r, InvalidInput):
            report.skipped[skip_reason(r.problem)] += 1
            continue
        category = from_tagpack(t.get("category"), t.get("abuse"), label, t.get("title"))
        ident = (r.chain, r.key if r.key is not None else r.address, label, category)
        if ident in seen:
            report.skipped["duplicate tag in the pack"] += 1
            continue
        seen.add(ident)
        context: dict[str, Any] = {
            "tagpack": stem,
            "title": t.get("title"),
            "creator": t.get("creator"),
            "source": t.get("source"),
            "currency": currency,
            "tagpack_category": t.get("category"),
            "tagpack_abuse": t.get("abuse"),
            "tagpack_confidence": t.get("confidence"),
            "actor": t.get("actor"),
            "concepts": t.get("concepts"),
            "tag_context": _tag_context(t.get("context")),
            "asset": r.asset,
        }
        if r.checksum_warning:
            context["warning"] = "mixed-case address with a wrong EIP-55 checksum, kept as given"
            report.warnings["wrong EIP-55 checksum, kept as given"] += 1
        rows.append(
            source,
            r.chain,
            r.address,
            r.key,
            label,
            category,
            tagpack_confidence(t.get("confidence")),
            None,
            dates[lastmod]
            if (lastmod := t.get("lastmod")) in dates
            else dates.setdefault(lastmod, _date(lastmod)),
            t.get("is_cluster_definer") is True,
            {k: v for k, v in context.items() if v is not None},
        )
    report.imported = len(rows)
    return rows, report


def import_tagpacks(
    con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressFn = no_progress
) -> list[SourceReport]:
    """Import one pack or every pack under a directory, in one transaction (each pack replaces its own
    source's labels). Every pack is parsed and checked before anything is written."""
    files = pack_files(path)
    names: dict[str, Path] = {}
    for f in files:
        other = names.setdefault(source_name(f), f)
        if other != f:
            raise InvalidInput(
                f"two packs share the source name {source_name(f)!r}: {other} and {f}",
                "import them separately (each replaces the labels of its own file stem)",
            )
    total = sum(f.stat().st_size for f in files)
    done = 0
    imports: list[SourceImport] = []
    reports: list[SourceReport] = []
    for f in files:
        progress(ImportProgress(done, total, f.name))
        rows, report = pack_rows(f, load_pack(f))
        imports.append(SourceImport(report.source, IMPORTER, str(f), rows))
        reports.append(report)
        done += f.stat().st_size
    progress(ImportProgress(done, total, "writing"))
    replace_sources(con, imports)
    progress(ImportProgress(total, total, "done"))
    return reports

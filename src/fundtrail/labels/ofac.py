"""OFAC sanctions -> labels (category ``sanctioned``, confidence 100, cluster definers).

Three inputs, each re-runnable (an import replaces every label of its source):

* ``SDN_ADVANCED.XML`` (namespace
  ``https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/ADVANCED_XML``): the
  ``FeatureType`` reference values named ``Digital Currency Address - <ASSET>`` give the feature type
  ids; each ``DistinctParty/Profile/Feature`` of such a type holds the address in
  ``FeatureVersion/VersionDetail``; the entity name is the primary ``Identity/Alias/DocumentedName``
  (its ``NamePartValue`` parts), other aliases are kept as AKAs; programs come from the
  ``SanctionsEntry`` of the profile (``SanctionsMeasure/Comment``). Source ``ofac-xml:sdn_advanced``.
* the classic ``SDN.XML``: ``sdnEntry`` with ``uid``, ``firstName``/``lastName``, ``programList`` and
  ``idList/id`` whose ``idType`` is ``Digital Currency Address - <ASSET>`` and ``idNumber`` the address.
  Source ``ofac-xml:sdn``.
* the per-asset lists of 0xB10C's ofac-sanctioned-digital-currency-addresses
  (``sanctioned_addresses_<ASSET>.txt`` or ``.json``), one source per asset ``ofac-list:<ASSET>``,
  optionally joined case-insensitively with a ``sanctioned-addresses.json`` of entity names, programs and
  SDN uids (thomasgregg/crypto-sanctions-list; it lower-cases every address, so it serves only as
  metadata: the address text always comes from the list).

XML is parsed with defusedxml (streaming); a document declaring a DTD or entities is refused (entity
expansion "billion laughs" bombs, external entities). Address chains follow
:mod:`fundtrail.labels.addresses` (OFAC files TRON addresses under XBT, USDT covers three chains); the
declared asset is kept in the context as ``currency``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import duckdb
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.labels.addresses import resolve
from fundtrail.labels.report import ImportProgress, ProgressFn, SourceReport, no_progress, skip_reason
from fundtrail.labels.store import LabelRows, SourceImport, replace_sources

CATEGORY = "sanctioned"
CONFIDENCE = 100
DCA_PREFIX = "Digital Currency Address - "
ADVANCED_SOURCE = "ofac-xml:sdn_advanced"
CLASSIC_SOURCE = "ofac-xml:sdn"
_LIST_FILE = re.compile(r"^sanctioned_addresses_([A-Za-z0-9]+)\.(txt|json)$")


@dataclass
class Designation:
    """One sanctioned address as a list states it."""

    asset: str
    address: str
    entity: str | None = None
    context: dict[str, Any] = field(default_factory=dict)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(el: Element, name: str) -> Iterator[Element]:
    return (c for c in el if _local(c.tag) == name)


def _child(el: Element, name: str) -> Element | None:
    return next(_children(el, name), None)


def _text(el: Element | None) -> str | None:
    if el is None or el.text is None or not el.text.strip():
        return None
    return el.text.strip()


def _rows(
    source: str, path: Path, designations: list[Designation], list_name: str
) -> tuple[LabelRows, SourceReport]:
    report = SourceReport(source, source.split(":")[0], str(path))
    rows = LabelRows()
    seen: set[tuple[str, bytes | str, str]] = set()
    for d in designations:
        try:
            r = resolve(d.asset, d.address, strict=False)
        except InvalidInput as exc:
            report.skipped[skip_reason(exc.problem)] += 1
            continue
        label = d.entity or f"{list_name} ({d.asset})"
        ident = (r.chain, r.key if r.key is not None else r.address, label)
        if ident in seen:
            report.skipped["listed twice"] += 1
            continue
        seen.add(ident)
        context: dict[str, Any] = {"list": list_name, "currency": d.asset, **d.context}
        if r.asset:
            context["asset"] = r.asset
        if r.checksum_warning:
            context["warning"] = "mixed-case address with a wrong EIP-55 checksum, kept as given"
            report.warnings["wrong EIP-55 checksum, kept as given"] += 1
        rows.append(source, r.chain, r.address, r.key, label, CATEGORY, CONFIDENCE, None, None, True, context)
    report.imported = len(rows)
    return rows, report


# ---------------------------------------------------------------- XML


def _events(path: Path) -> Iterator[tuple[str, Element]]:
    try:
        yield from iterparse(str(path), events=("start", "end"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise CorruptData(
            f"{path} declares a DTD or entities ({type(exc).__name__}); refused: entity expansion and "
            "external entities can exhaust memory or read local files",
            "give the OFAC file as published (it declares none)",
        ) from None
    except ParseError as exc:
        raise CorruptData(f"{path} is not well-formed XML ({exc})", "download the file again") from None


def _advanced(
    events: Iterator[tuple[str, Element]], root: Element
) -> tuple[list[Designation], dict[str, Any]]:
    feature_assets: dict[str, str] = {}  # FeatureType ID -> asset
    program_types: set[str] = set()
    by_profile: dict[str, list[Designation]] = {}
    programs: dict[str, list[str]] = {}
    meta: dict[str, Any] = {}
    for event, el in events:
        if event != "end":
            continue
        name = _local(el.tag)
        if name == "FeatureType":
            text = _text(el) or ""
            if text.startswith(DCA_PREFIX) and el.get("ID"):
                feature_assets[el.get("ID", "")] = text.removeprefix(DCA_PREFIX).strip()
        elif name == "SanctionsType" and _text(el) == "Program":
            program_types.add(el.get("ID", ""))
        elif name == "DateOfIssue":
            parts = [_text(_child(el, p)) for p in ("Year", "Month", "Day")]
            if all(parts):
                meta["date_of_issue"] = "-".join(f"{int(p or 0):02d}" for p in parts)
        elif name == "DistinctParty":
            for profile in _children(el, "Profile"):
                pid = profile.get("ID", "")
                names: list[str] = []
                primary: str | None = None
                for identity in _children(profile, "Identity"):
                    for alias in _children(identity, "Alias"):
                        for doc in _children(alias, "DocumentedName"):
                            text = " ".join(
                                t
                                for t in (_text(v) for v in doc.iter() if _local(v.tag) == "NamePartValue")
                                if t
                            )
                            if not text:
                                continue
                            if alias.get("Primary") == "true" and primary is None:
                                primary = text
                            elif text not in names:
                                names.append(text)
                for feature in _children(profile, "Feature"):
                    asset = feature_assets.get(feature.get("FeatureTypeID", ""))
                    if asset is None:
                        continue
                    for version in _children(feature, "FeatureVersion"):
                        for detail in _children(version, "VersionDetail"):
                            address = _text(detail)
                            if address:
                                ctx: dict[str, Any] = {"profile_id": pid}
                                akas = [n for n in names if n != primary]
                                if akas:
                                    ctx["akas"] = akas
                                by_profile.setdefault(pid, []).append(
                                    Designation(asset, address, primary or (names[0] if names else None), ctx)
                                )
            el.clear()
        elif name == "SanctionsEntry":
            pid = el.get("ProfileID", "")
            for measure in _children(el, "SanctionsMeasure"):
                if program_types and measure.get("SanctionsTypeID") not in program_types:
                    continue
                program = _text(_child(measure, "Comment"))
                if program:
                    programs.setdefault(pid, []).append(program)
            el.clear()
    out: list[Designation] = []
    for pid, ds in by_profile.items():
        for d in ds:
            if pid in programs:
                d.context["programs"] = programs[pid]
            out.append(d)
    root.clear()
    return out, meta


def _classic(
    events: Iterator[tuple[str, Element]], root: Element
) -> tuple[list[Designation], dict[str, Any]]:
    out: list[Designation] = []
    meta: dict[str, Any] = {}
    for event, el in events:
        if event != "end":
            continue
        name = _local(el.tag)
        if name == "Publish_Date" and _text(el):
            meta["publish_date"] = _text(el)
        elif name == "sdnEntry":
            first, last = _text(_child(el, "firstName")), _text(_child(el, "lastName"))
            entity = " ".join(p for p in (first, last) if p) or None
            uid = _text(_child(el, "uid"))
            plist = _child(el, "programList")
            programs = [p for p in (_text(x) for x in _children(plist, "program")) if p] if plist else []
            alist = _child(el, "akaList")
            akas: list[str] = []
            if alist is not None:
                for aka in _children(alist, "aka"):
                    a = " ".join(
                        p for p in (_text(_child(aka, "firstName")), _text(_child(aka, "lastName"))) if p
                    )
                    if a:
                        akas.append(a)
            ids = _child(el, "idList")
            for id_el in _children(ids, "id") if ids is not None else ():
                id_type = _text(_child(id_el, "idType")) or ""
                number = _text(_child(id_el, "idNumber"))
                if id_type.startswith(DCA_PREFIX) and number:
                    ctx: dict[str, Any] = {"sdn_uid": uid, "programs": programs}
                    if akas:
                        ctx["akas"] = akas
                    out.append(Designation(id_type.removeprefix(DCA_PREFIX).strip(), number, entity, ctx))
            el.clear()
    root.clear()
    return out, meta


def read_sdn_xml(path: Path) -> tuple[str, list[Designation], dict[str, Any]]:
    """(source, designations, publication metadata) of an SDN_ADVANCED.XML or SDN.XML file."""
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist", "give the path of SDN_ADVANCED.XML or SDN.XML")
    events = _events(path)
    for event, root in events:
        if event == "start":
            kind = _local(root.tag)
            if kind == "Sanctions":
                ds, meta = _advanced(events, root)
                return ADVANCED_SOURCE, ds, meta
            if kind == "sdnList":
                ds, meta = _classic(events, root)
                return CLASSIC_SOURCE, ds, meta
            raise CorruptData(
                f"{path} is neither SDN_ADVANCED.XML (<Sanctions>) nor SDN.XML (<sdnList>): root <{kind}>",
                "give an OFAC SDN XML file",
            )
    raise CorruptData(f"{path} is empty", "give an OFAC SDN XML file")


def import_ofac_xml(
    con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressFn = no_progress
) -> list[SourceReport]:
    """Import the Digital Currency Addresses of an OFAC SDN XML file (either format), replacing the
    labels of the previous import of that format."""
    size = path.stat().st_size if path.is_file() else 0
    progress(ImportProgress(0, size, path.name))
    source, designations, meta = read_sdn_xml(path)
    for d in designations:
        d.context.update(meta)
    rows, report = _rows(source, path, designations, "OFAC SDN")
    progress(ImportProgress(size, size, "writing"))
    replace_sources(con, [SourceImport(source, "ofac-xml", str(path), rows)])
    return [report]


# ---------------------------------------------------------------- per-asset lists


def list_files(path: Path) -> list[tuple[str, Path]]:
    """(asset, file) of the lists at ``path``: one file, or a directory (the .json of an asset when both
    its .txt and .json are present: they hold the same addresses)."""
    if path.is_file():
        m = _LIST_FILE.match(path.name)
        if not m:
            raise InvalidInput(
                f"cannot tell the asset of {path.name}", "name it sanctioned_addresses_<ASSET>.txt or .json"
            )
        return [(m.group(1).upper(), path)]
    if not path.is_dir():
        raise InvalidInput(f"{path} does not exist", "give a list file or the directory of lists")
    chosen: dict[str, Path] = {}
    for f in sorted(path.iterdir()):
        m = _LIST_FILE.match(f.name)
        if m and (m.group(1).upper() not in chosen or f.suffix == ".json"):
            chosen[m.group(1).upper()] = f
    if not chosen:
        raise InvalidInput(
            f"no sanctioned_addresses_<ASSET>.txt/.json under {path}", "give the lists' directory"
        )
    return sorted(chosen.items())


def read_list(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorruptData(f"{path} is not valid JSON ({exc})", "download the list again") from None
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise CorruptData(f"{path} is not a JSON list of address strings", "download the list again")
        return [a.strip() for a in value if a.strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_entities(path: Path) -> dict[str, list[dict[str, Any]]]:
    """lower-cased address -> SDN entries ({entity, program, type, uid, akas}) of a
    sanctioned-addresses.json (thomasgregg/crypto-sanctions-list)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInput(
            f"cannot read the entities file {path} ({exc})", "give sanctioned-addresses.json"
        ) from None
    addresses = value.get("addresses") if isinstance(value, dict) else None
    if not isinstance(addresses, dict):
        raise CorruptData(f"{path} has no `addresses` mapping", "give sanctioned-addresses.json")
    out: dict[str, list[dict[str, Any]]] = {}
    for addr, item in addresses.items():
        entries = item.get("entries") if isinstance(item, dict) else None
        if isinstance(entries, list):
            out[addr.strip().lower()] = [e for e in entries if isinstance(e, dict)]
    return out


def _listed(asset: str, address: str, entities: dict[str, list[dict[str, Any]]] | None) -> Designation:
    entries = entities.get(address.lower()) if entities is not None else None
    if not entries:
        return Designation(asset, address)
    names = list(dict.fromkeys(str(e["entity"]) for e in entries if e.get("entity")))
    sdn = [
        {k: e.get(k) for k in ("entity", "program", "uid", "type", "akas") if e.get(k) is not None}
        for e in entries
    ]
    programs = sorted(
        {p.strip() for e in entries for p in str(e.get("program") or "").split(",") if p.strip()}
    )
    uids = sorted({str(e["uid"]) for e in entries if e.get("uid")})
    return Designation(
        asset, address, "; ".join(names) or None, {"sdn_entries": sdn, "programs": programs, "sdn_uids": uids}
    )


def import_ofac_lists(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    entities: Path | None = None,
    progress: ProgressFn = no_progress,
) -> list[SourceReport]:
    """Import one per-asset list or a directory of them (one source per asset, ``ofac-list:<ASSET>``), in
    one transaction, joined with the entity metadata of ``entities`` when given."""
    files = list_files(path)
    meta = read_entities(entities) if entities is not None else None
    imports: list[SourceImport] = []
    reports: list[SourceReport] = []
    for n, (asset, f) in enumerate(files):
        progress(ImportProgress(n, len(files), f.name))
        source = f"ofac-list:{asset}"
        rows, report = _rows(source, f, [_listed(asset, a, meta) for a in read_list(f)], "OFAC SDN")
        if meta is not None:
            unmatched = sum(1 for c in rows.context if c is None or '"sdn_entries"' not in c)
            if unmatched:
                report.warnings["no entity in the entities file (label names the list)"] += unmatched
        imports.append(SourceImport(source, "ofac-list", str(f), rows))
        reports.append(report)
    progress(ImportProgress(len(files), len(files), "writing"))
    replace_sources(con, imports)
    return reports

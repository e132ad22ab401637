"""A CSV file of labels -> labels, strictly.

Header, exactly: ``chain,address,label,category,source,confidence`` and optionally ``,context``.
Every row is checked before anything is written; the first bad row is an error naming its line, the
field and the fix, and nothing is imported. Rules per field:

* ``chain``: a chain fundtrail ingests (the address is parsed strictly: checksums, EIP-55 for mixed
  case) or the lower-case name of one it does not (``litecoin``, ``monero`` ...: kept as given);
* ``label``: not empty; ``category``: one of the taxonomy;
* ``source``: not empty, not one of the importers' prefixes (``tagpack:``, ``ofac-xml:``, ``ofac-list:``);
* ``confidence``: an integer 0-100, or empty for unknown;
* ``context``: a JSON object, or any text (kept as ``{"note": text}``), or empty.

The import replaces every label of each source the file names (re-importing the file changes nothing).
"""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from fundtrail.errors import InvalidInput
from fundtrail.labels.addresses import check_chain, resolve_on
from fundtrail.labels.report import ImportProgress, ProgressFn, SourceReport, no_progress
from fundtrail.labels.store import LabelRows, SourceImport, check_source, parse_context, replace_sources
from fundtrail.labels.taxonomy import CATEGORIES

HEADER = ["chain", "address", "label", "category", "source", "confidence"]
IMPORTER = "csv"


def _bad(path: Path, line: int, fld: str, problem: str, fix: str) -> InvalidInput:
    return InvalidInput(f"{path.name} line {line}, field {fld}: {problem}", f"{fix}; nothing was imported")


def read_csv(path: Path) -> dict[str, LabelRows]:
    """The rows of a label CSV per source, every row checked (see the module doc)."""
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist", "give the path of a label CSV file")
    by_source: dict[str, LabelRows] = {}
    seen: dict[tuple[str, str, bytes | str, str], int] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise InvalidInput(f"{path.name} is empty", f"start it with the header {','.join(HEADER)}")
            header = [h.strip() for h in header]
            if header not in (HEADER, [*HEADER, "context"]):
                raise InvalidInput(
                    f"{path.name} line 1: header is {','.join(header)!r}",
                    f"use exactly {','.join(HEADER)} (optionally followed by ,context)",
                )
            for row in reader:
                line = reader.line_num
                if not any(c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    raise InvalidInput(
                        f"{path.name} line {line}: {len(row)} fields, the header has {len(header)}",
                        "quote fields that contain commas; nothing was imported",
                    )
                f = dict(zip(header, row))
                chain = f["chain"].strip()
                try:
                    check_chain(chain)
                except InvalidInput as exc:
                    raise _bad(path, line, "chain", exc.problem, exc.fix or "fix it") from None
                try:
                    r = resolve_on(chain, f["address"], strict=True)
                except InvalidInput as exc:
                    raise _bad(path, line, "address", exc.problem, exc.fix or "fix it") from None
                label = f["label"].strip()
                if not label:
                    raise _bad(path, line, "label", "empty", "give the label text")
                category = f["category"].strip()
                if category not in CATEGORIES:
                    raise _bad(
                        path,
                        line,
                        "category",
                        f"{category!r} is not a category",
                        f"use one of {', '.join(CATEGORIES)}",
                    )
                try:
                    source = check_source(f["source"])
                except InvalidInput as exc:
                    raise _bad(path, line, "source", exc.problem, exc.fix or "fix it") from None
                text = f["confidence"].strip()
                confidence: int | None = None
                if text:
                    if not text.isdigit() or not 0 <= int(text) <= 100:
                        raise _bad(
                            path,
                            line,
                            "confidence",
                            f"{text!r} is not an integer 0-100",
                            "give 0-100, or leave it empty for unknown",
                        )
                    confidence = int(text)
                ident = (source, r.chain, r.key if r.key is not None else r.address, label)
                if ident in seen:
                    raise _bad(
                        path,
                        line,
                        "address",
                        f"repeats line {seen[ident]} (same source, chain, address, label)",
                        "remove the duplicate row",
                    )
                seen[ident] = line
                rows = by_source.setdefault(source, LabelRows())
                context = parse_context(f.get("context"))
                rows.append(
                    source, r.chain, r.address, r.key, label, category, confidence, None, None, False, context
                )
        except csv.Error as exc:
            raise InvalidInput(
                f"{path.name} line {reader.line_num}: {exc}", "fix the CSV quoting; nothing was imported"
            ) from None
    return by_source


def import_csv(
    con: duckdb.DuckDBPyConnection, path: Path, progress: ProgressFn = no_progress
) -> list[SourceReport]:
    """Import a label CSV: every row checked first, then each source it names replaced in one transaction."""
    progress(ImportProgress(0, 1, path.name))
    by_source = read_csv(path)
    imports = [SourceImport(s, IMPORTER, str(path), rows) for s, rows in by_source.items()]
    replace_sources(con, imports)
    progress(ImportProgress(1, 1, "done"))
    return [SourceReport(s, IMPORTER, str(path), imported=len(rows)) for s, rows in by_source.items()]

"""Label import throughput: every shared GraphSense TagPack (70 packs, 235,751 tags) into a fresh store,
against the bare YAML parse of the same files with PyYAML's CSafeLoader (libyaml), which the import
includes. Target: the whole import under 30 s on a 2-core machine."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from fundtrail.labels.tagpack import import_tagpacks, pack_files
from fundtrail.store.db import connect

PACKS = "labels/graphsense-tagpacks/packs"
REFERENCE = "yaml.load(CSafeLoader) of the same pack files (parse only)"
TARGET_S = 30.0


def run(data_dir: Path) -> dict[str, Any]:
    """Time the full import (parse, resolve addresses, bulk write) and the bare YAML parse."""
    packs = data_dir / PACKS
    files = pack_files(packs)
    t0 = time.perf_counter()
    for f in files:
        yaml.load(f.read_bytes(), Loader=yaml.CSafeLoader)
    parse_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(Path(tmp) / "labels.duckdb")
        try:
            t0 = time.perf_counter()
            reports = import_tagpacks(con, packs)
            import_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            import_tagpacks(con, packs)
            reimport_s = time.perf_counter() - t0
        finally:
            con.close()
    imported = sum(r.imported for r in reports)
    tags = imported + sum(sum(r.skipped.values()) for r in reports)
    return {
        "name": "labels_import_tagpacks",
        "ours": round(import_s, 3),
        "reference": round(parse_s, 3),
        "ratio": round(import_s / parse_s, 3) if parse_s else None,
        "unit": "s",
        "reference_name": REFERENCE,
        "packs": len(files),
        "tags": tags,
        "imported": imported,
        "tags_per_s": round(tags / import_s) if import_s else None,
        "reimport_s": round(reimport_s, 3),
        "target_s": TARGET_S,
        "within_target": import_s < TARGET_S,
        "target": TARGET_S,
        "met": import_s < TARGET_S,
    }


if __name__ == "__main__":
    import json
    import sys

    root = Path(__file__).resolve().parents[1]
    print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else root / ".." / "shared" / "data")))

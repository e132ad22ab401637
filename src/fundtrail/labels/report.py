"""What an import did, per source (imported, skipped with reasons, warnings), and its progress events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceReport:
    source: str
    importer: str
    path: str
    imported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> tags skipped
    warnings: Counter[str] = field(default_factory=Counter)  # note -> tags imported with it

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "importer": self.importer,
            "path": self.path,
            "imported": self.imported,
            "skipped": dict(sorted(self.skipped.items())),
            "warnings": dict(sorted(self.warnings.items())),
        }


@dataclass
class ImportProgress:
    done: int  # units done (bytes of input read)
    total: int  # units in all
    note: str = ""


ProgressFn = Callable[[ImportProgress], None]


def no_progress(_: ImportProgress) -> None:
    return None


def skip_reason(problem: str) -> str:
    """A skip reason that groups well: the problem without the quoted address it names."""
    if "'" in problem:
        head, _, rest = problem.partition("'")
        _, _, tail = rest.partition("'")
        return f"{head}<address>{tail}".strip()
    return problem

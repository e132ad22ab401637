"""Settings, in one place. Each has a default, an environment override and a help text."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DB = Path("fundtrail.duckdb")
ENV_DB = "FUNDTRAIL_DB"


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("db", ENV_DB, str(DEFAULT_DB), "Path of the DuckDB store file; --db overrides it."),
)


def db_path(explicit: Path | None = None) -> Path:
    """The store path: ``--db`` first, then ``FUNDTRAIL_DB``, then ``./fundtrail.duckdb``."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_DB)
    return Path(env) if env else DEFAULT_DB

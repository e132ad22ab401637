"""Settings, in one place. Each has a default, an environment override and a help text."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fundtrail.errors import InvalidInput

DEFAULT_DB = Path("fundtrail.duckdb")
ENV_DB = "FUNDTRAIL_DB"
DEFAULT_CONFIG = Path("fundtrail.toml")
ENV_CONFIG = "FUNDTRAIL_CONFIG"


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("db", ENV_DB, str(DEFAULT_DB), "Path of the DuckDB store file; --db overrides it."),
    Setting(
        "config",
        ENV_CONFIG,
        str(DEFAULT_CONFIG),
        "Path of the TOML configuration (heuristics and their parameters); read when it exists; "
        "--config overrides it.",
    ),
)


def db_path(explicit: Path | None = None) -> Path:
    """The store path: ``--db`` first, then ``FUNDTRAIL_DB``, then ``./fundtrail.duckdb``."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_DB)
    return Path(env) if env else DEFAULT_DB


def config_path(explicit: Path | None = None) -> Path | None:
    """The configuration file: ``--config`` first (must exist), then ``FUNDTRAIL_CONFIG`` (must exist),
    then ``./fundtrail.toml`` when present; None means the built-in defaults."""
    if explicit is not None:
        return explicit
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def config_table(path: Path, name: str, fix: str) -> dict[str, Any]:
    """The ``[name]`` table of the TOML configuration file at ``path`` (empty when absent); a missing
    file, invalid TOML or a ``name`` that is not a table is a one-line error (``fix`` says how to write
    the table)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInput(
            f"configuration file {path} does not exist", "fix --config/FUNDTRAIL_CONFIG"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"configuration file {path} is not valid TOML ({exc})", "fix its syntax") from None
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise InvalidInput(f"{path}: [{name}] must be a table", fix)
    return table

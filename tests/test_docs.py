"""Public commands and settings are documented (house rule 9), and the README keeps its two commands."""

from __future__ import annotations

from typing import Any

import typer

from fundtrail.cli.main import app
from fundtrail.settings import SETTINGS
from tests.conftest import ROOT


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            out += _commands(cmd, (*prefix, name))
        else:
            out.append((*prefix, name))
    return out


def test_every_command_has_a_page_and_an_index_row() -> None:
    root = typer.main.get_command(app)
    commands = _commands(root)
    assert ("ingest", "bitcoin-blocks") in commands and ("show", "tx") in commands
    index = (ROOT / "docs" / "commands" / "README.md").read_text()
    for parts in commands:
        page = ROOT / "docs" / "commands" / f"{'-'.join(parts)}.md"
        assert page.is_file(), f"{page} missing"
        assert f"fundtrail {' '.join(parts)}" in page.read_text()
        assert f"fundtrail {' '.join(parts)}" in index


def test_settings_documented() -> None:
    text = (ROOT / "docs" / "settings.md").read_text()
    for s in SETTINGS:
        assert s.env in text and s.default in text


def test_readme_gives_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text

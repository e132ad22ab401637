"""The ``fundtrail`` command: a thin face over the library. Each command parses its input, calls one
library function and formats the answer (a table for people, ``--json`` for machines)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from fundtrail.cli import alerts as alerts_cli
from fundtrail.cli import audit as audit_cli
from fundtrail.cli import case as case_cli
from fundtrail.cli import (
    cluster,
    evaluate,
    exposure,
    ingest,
    keys,
    labels,
    orgs,
    screen,
    show,
    simulate,
    trace,
    users,
)
from fundtrail.cli import detect as detect_cli
from fundtrail.cli import model as model_cli
from fundtrail.cli import serve as serve_cli
from fundtrail.cli.state import state
from fundtrail.errors import FundtrailError

app = typer.Typer(
    name="fundtrail",
    help="Trace, attribute and screen crypto-asset flows. Store: --db, FUNDTRAIL_DB, ./fundtrail.duckdb.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(ingest.app, name="ingest")
app.add_typer(show.app, name="show")
app.add_typer(labels.app, name="labels")
app.add_typer(orgs.app, name="orgs")
app.add_typer(users.app, name="users")
app.add_typer(keys.app, name="keys")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(case_cli.app, name="case")
app.add_typer(alerts_cli.app, name="alerts")
app.add_typer(model_cli.app, name="model")
app.command("summary")(show.summary)
app.command("cluster")(cluster.cluster)
app.command("explain-cluster")(cluster.explain_cluster)
app.command("trace")(trace.trace_command)
app.command("screen")(screen.screen_command)
app.command("exposure")(exposure.exposure_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("detect")(detect_cli.detect_command)
app.command("simulate")(simulate.simulate_command)
app.command("serve")(serve_cli.serve_command)
show.app.command("cluster")(cluster.show_cluster)


@app.callback()
def _global(
    db: Annotated[
        Path | None,
        typer.Option("--db", help="Store file (default: $FUNDTRAIL_DB, else ./fundtrail.duckdb)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    state.db = db
    state.debug = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(message)s")


GLOBAL_FLAGS = ("--debug",)
GLOBAL_OPTIONS = ("--db",)


def hoist_global_options(argv: list[str]) -> list[str]:
    """Accept the global options anywhere on the line (``fundtrail show tx X --db f.duckdb``) by moving
    them before the command, where Click parses them."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        if a in GLOBAL_FLAGS or any(a.startswith(o + "=") for o in GLOBAL_OPTIONS):
            front.append(a)
        elif a in GLOBAL_OPTIONS and i + 1 < len(argv):
            front += [a, argv[i + 1]]
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


def main() -> None:
    debug = "--debug" in sys.argv
    try:
        app(args=hoist_global_options(sys.argv[1:]), prog_name="fundtrail")
    except FundtrailError as exc:
        if debug:
            logging.getLogger("fundtrail").exception("error")
        print(f"error: {exc.line()}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: every batch committed before it is stored; re-run to resume", file=sys.stderr)
        sys.exit(130)

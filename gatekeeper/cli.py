"""The `gatekeeper` command (`python -m gatekeeper`).

Each command group lives in its own module under `gatekeeper/commands/` and exposes
`register(subparsers)`; this file only wires them together. Commands exit 0 on success,
1 when a check they ran failed, and 2 on bad input with a message naming the file and field.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gatekeeper.errors import Problem

# Module names under gatekeeper.commands; each defines register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "tenants",
    "identities",
    "policy",
    "keys",
    "evaluate",
    "package",
    "admin",
    "audit",
)


class UsageError(Exception):
    """Bad input to a command: printed as one line naming the file and field; exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatekeeper", description="Gatekeeper: a CI/CD gate for MSPs.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"gatekeeper.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from gatekeeper.commands.common import command_services
    from gatekeeper.services import using_services

    try:
        with using_services(lambda: command_services(args)):
            return int(args.handler(args) or 0)
    except UsageError as exc:
        print(f"gatekeeper: error: {exc}", file=sys.stderr)
        return 2
    except Problem as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        print(f"gatekeeper: error: {exc.title}: {exc.detail}{where}", file=sys.stderr)
        return 2

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

from gatekeeper.errors import GatekeeperError, InvalidInput

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
    "request",
    "deadletters",
    "report",
    "mcp_guard",
)


# Exit codes: 0 success, 1 a check the command ran failed (the command returns it), 2 bad input. Every product
# error a command lets through is answered here, from its kind; today every kind exits 2.
EXIT_BAD_INPUT = 2
EXIT_BY_KIND: dict[type[GatekeeperError], int] = {InvalidInput: EXIT_BAD_INPUT, GatekeeperError: EXIT_BAD_INPUT}


def exit_code_of(error: GatekeeperError) -> int:
    """The exit code for a product error: the most specific kind in its class hierarchy that has one."""
    return next(EXIT_BY_KIND[k] for k in type(error).__mro__ if k in EXIT_BY_KIND)


def error_line(error: GatekeeperError) -> str:
    """The one line a command prints for a product error, naming the file and field where it knows them."""
    from gatekeeper.commands.common import UsageError

    if isinstance(error, UsageError):
        return f"gatekeeper: error: {error}"
    where = f" (field: {error.field})" if error.field else ""
    return f"gatekeeper: error: {error.title}: {error.detail}{where}"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command, or only `only`: `main` registers just the command the line names, so a command imports
    its own dependencies and no other's (`request` runs in every guarded CI step; it needs no Azure SDK)."""
    parser = argparse.ArgumentParser(prog="gatekeeper", description="Gatekeeper: a CI/CD gate for MSPs.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        if only is None or name == only:
            module = importlib.import_module(f"gatekeeper.commands.{name}")
            module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    module = words[0].replace("-", "_") if words else None  # `mcp-guard` lives in commands/mcp_guard.py
    parser = build_parser(only=module if module in COMMAND_MODULES else None)
    args = parser.parse_args(words)

    try:
        if not getattr(args, "needs_services", True):  # a client command: nothing of the app's to build
            return int(args.handler(args) or 0)
        from gatekeeper.commands.common import command_services
        from gatekeeper.services import using_services

        with using_services(lambda: command_services(args)):
            return int(args.handler(args) or 0)
    except GatekeeperError as exc:
        print(error_line(exc), file=sys.stderr)
        return exit_code_of(exc)

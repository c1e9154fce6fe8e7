"""Options and helpers shared by commands that reach storage."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from gatekeeper.errors import InvalidInput
from gatekeeper.store.tables import StorageAccount

if TYPE_CHECKING:
    from gatekeeper.services import Services
    from gatekeeper.tenancy.registry import TenantRegistry


class UsageError(InvalidInput):
    """Bad input to a command: printed as one line naming the file and field; exit code 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="usage", title="Invalid input")

    def __str__(self) -> str:
        return self.detail


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-connection",
        metavar="CONNECTION_STRING",
        help="storage connection string (default: the GATEKEEPER_STORAGE_CONNECTION / "
        "GATEKEEPER_STORAGE_ACCOUNT app settings)",
    )


def command_services(args: argparse.Namespace) -> Services:
    """What `gatekeeper.cli.main` serves to one command (through `gatekeeper.services.using_services`): the
    product's services built from the environment at that moment, over `--storage-connection` when given.
    A setting that does not parse is a usage error naming it (exit 2)."""
    from gatekeeper.commands.common import UsageError
    from gatekeeper.services import build_services
    from gatekeeper.settings import Settings

    try:
        settings = Settings.from_environ()
    except ValueError as exc:
        raise UsageError(f"app settings: {exc}") from None
    connection = getattr(args, "storage_connection", None)
    return build_services(settings, storage=StorageAccount(connection_string=connection) if connection else None)


def services_from_args(args: argparse.Namespace) -> Services:
    """The services a command uses: `gatekeeper.services.get_services()`, the one accessor (the CLI's
    `main` scopes `command_services(args)` around each command); building one is a usage error if it fails."""
    from gatekeeper.commands.common import UsageError
    from gatekeeper.services import get_services

    try:
        return get_services()
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"app settings: {exc}") from None


def storage_from_args(args: argparse.Namespace) -> StorageAccount:
    if getattr(args, "storage_connection", None):
        return StorageAccount(connection_string=args.storage_connection)
    return services_from_args(args).storage  # a missing account setting raises to the command, as before


def registry_from_args(args: argparse.Namespace) -> TenantRegistry:
    """The tenant registry a command imports through: storage from the arguments or settings, and the
    deployment's data boundary (GATEKEEPER_DATA_BOUNDARY), so the CLI refuses what the app would refuse."""
    from gatekeeper.tenancy.registry import TenantRegistry

    boundary = services_from_args(args).settings.data_boundary
    return TenantRegistry(storage_from_args(args), data_boundary=boundary)

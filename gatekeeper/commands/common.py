"""Options and helpers shared by commands that reach storage."""

from __future__ import annotations

import argparse

from gatekeeper.store.tables import StorageAccount


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-connection",
        metavar="CONNECTION_STRING",
        help="storage connection string (default: the GATEKEEPER_STORAGE_CONNECTION / "
        "GATEKEEPER_STORAGE_ACCOUNT app settings)",
    )


def storage_from_args(args: argparse.Namespace) -> StorageAccount:
    if getattr(args, "storage_connection", None):
        return StorageAccount(connection_string=args.storage_connection)
    from gatekeeper.runtime import storage_from_settings

    return storage_from_settings()

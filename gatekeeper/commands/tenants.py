"""`gatekeeper tenants import FILE`, `gatekeeper tenants list` and `gatekeeper tenants github-oidc`: the tenant
registry."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gatekeeper.commands.common import add_storage_option, registry_from_args, storage_from_args

if TYPE_CHECKING:
    from gatekeeper.tenancy.model import TenantRecord


def register(subparsers: argparse._SubParsersAction) -> None:
    tenants = subparsers.add_parser("tenants", help="manage the tenant registry")
    actions = tenants.add_subparsers(dest="tenants_command", required=True, metavar="ACTION")

    importer = actions.add_parser("import", help="add or replace tenants from a YAML or JSON file")
    importer.add_argument("file", type=Path)
    add_storage_option(importer)
    importer.set_defaults(handler=import_tenants)

    lister = actions.add_parser("list", help="show the registered tenants (never secrets)")
    lister.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_storage_option(lister)
    lister.set_defaults(handler=list_tenants)

    oidc = actions.add_parser(
        "github-oidc",
        help="let GitHub Actions jobs of an owner (by numeric id) ask for action approvals with their OIDC token",
    )
    oidc.add_argument("tenant", help="the tenant id")
    oidc.add_argument(
        "--owner-id",
        required=True,
        help="the organisation's or user's numeric id (the token's repository_owner_id claim)",
    )
    oidc.add_argument(
        "--repository",
        action="append",
        default=[],
        metavar="OWNER/NAME",
        help="accept only these repositories of the owner (repeatable); default: every repository of the owner",
    )
    oidc.add_argument("--remove", action="store_true", help="remove the binding (and the named repositories)")
    add_storage_option(oidc)
    oidc.set_defaults(handler=bind_github_oidc)


def import_tenants(args: argparse.Namespace) -> int:
    from gatekeeper.commands.common import UsageError
    from gatekeeper.tenancy.boundary import BoundaryMismatch
    from gatekeeper.tenancy.registry import RegistryConflict, load_tenant_file

    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        records = load_tenant_file(text, filename=str(path))
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    registry = registry_from_args(args)
    try:  # the boundary first: a tenant this stamp must not hold gets no key and no row
        registry.check_boundaries(records)
        records = _with_kek_public(records)
        registry.import_records(records)
    except BoundaryMismatch as exc:
        raise UsageError(f"{path}: {exc.field}: {exc}") from exc
    except RegistryConflict as exc:
        raise UsageError(f"{path}: {exc}") from exc
    print(f"imported {len(records)} tenant(s): {', '.join(r.tenant_id for r in records)}")
    return 0


def _with_kek_public(records: list[TenantRecord]) -> list[TenantRecord]:
    """Each record with the public key of its tenant's current KEK (`kek_public`), read from the key provider
    the app settings name, so the ingestion edge needs no private-key operation. A tenant whose key cannot be
    read is imported without it (the edge then unwraps the active data key, as before) and a note says so."""
    from gatekeeper.services import get_services
    from gatekeeper.store.key_errors import KeyProviderError
    from gatekeeper.tenancy.model import TenantRecord

    try:
        provider = get_services().key_provider
    except (ValueError, RuntimeError) as exc:
        print(f"note: KEK public keys not recorded ({exc}); run `gatekeeper keys rotate` later", file=sys.stderr)
        return records
    completed = []
    for record in records:
        try:
            jwk = provider.public_jwk(record.tenant_id, create=True)  # onboarding: a local key is made now
            record = TenantRecord.model_validate({**record.model_dump(), "kek_public": jwk})
        except (KeyProviderError, ValueError) as exc:
            print(f"note: tenant {record.tenant_id}: KEK public key not recorded: {exc}", file=sys.stderr)
        completed.append(record)
    return completed


def list_tenants(args: argparse.Namespace) -> int:
    from gatekeeper.tenancy.registry import TenantRegistry

    records = TenantRegistry(storage_from_args(args)).records()
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return 0
    if not records:
        print("no tenants registered")
        return 0
    print(f"{'TENANT':<16} {'NAME':<28} {'ENABLED':<8} IDENTITIES")
    for record in records:
        identities = ", ".join(record.all_identities) or "-"
        print(
            f"{record.tenant_id:<16} {record.display_name[:28]:<28} {'yes' if record.enabled else 'no':<8} {identities}"
        )
    return 0


def bind_github_oidc(args: argparse.Namespace) -> int:
    """Add (or remove) `github:owner-id:<id>` and optional `github:repo:<owner/name>` identities."""
    import re

    from gatekeeper.commands.common import UsageError
    from gatekeeper.tenancy.boundary import BoundaryMismatch
    from gatekeeper.tenancy.model import TenantRecord
    from gatekeeper.tenancy.registry import RegistryConflict

    owner_id = str(args.owner_id).strip()
    if not re.fullmatch(r"[0-9]{1,20}", owner_id):
        raise UsageError(f"--owner-id: {owner_id[:40]!r} is not a GitHub numeric id (repository_owner_id)")
    for repository in args.repository:
        if not re.fullmatch(r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}", repository):
            raise UsageError(f"--repository: {repository[:120]!r} is not OWNER/NAME")
    registry = registry_from_args(args)
    record = registry.get(args.tenant)
    if record is None:
        raise UsageError(f"tenant {args.tenant[:64]!r}: not registered (gatekeeper tenants import)")
    named = [f"github:owner-id:{owner_id}", *(f"github:repo:{r.lower()}" for r in args.repository)]
    if args.remove:
        identities = tuple(i for i in record.identities if i not in named)
    else:
        identities = record.identities + tuple(i for i in named if i not in record.identities)
    updated = TenantRecord.model_validate({**record.model_dump(mode="json"), "identities": list(identities)})
    try:
        registry.import_records([updated])
    except (RegistryConflict, BoundaryMismatch) as exc:
        raise UsageError(f"tenant {record.tenant_id}: {exc}") from exc
    verb = "removed" if args.remove else "bound"
    scope = ", ".join(args.repository) or "every repository of the owner"
    print(f"{verb} GitHub OIDC owner {owner_id} for tenant {record.tenant_id} ({scope})")
    return 0

"""`gatekeeper keys rotate|status --tenant T`, `keys prune-transit`: rotate a tenant's keys without touching
its data, and delete the ingestion edge's transit keys past retention.

`rotate` re-wraps every data key of the tenant under the KEK's current version (after the customer, Key
Vault's rotation policy or `--new-kek-version` made a new one), and the transit keys younger than
GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS (older ones are about to be deleted and are left alone); `--data-key`
makes a new data key active for new writes, old data keys stay for reading. `prune-transit` deletes transit
keys past retention (what the hourly timer does), for one tenant or every registered one, or with
`--dry-run` only counts them. The key mode comes from the app settings (GATEKEEPER_KEY_MODE).
"""

from __future__ import annotations

import argparse
import json
import sys

from gatekeeper.commands.common import add_storage_option, services_from_args, storage_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    keys = subparsers.add_parser("keys", help="rotate and inspect tenant encryption keys")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    rotate = actions.add_parser(
        "rotate", help="re-wrap the tenant's data keys under the current KEK version (no data is touched)"
    )
    rotate.add_argument("--tenant", required=True, help="tenant id")
    rotate.add_argument("--data-key", action="store_true", help="also make a new data key active for new writes")
    rotate.add_argument(
        "--new-kek-version",
        action="store_true",
        help="first create a new KEK version (Key Vault: needs the 'rotate' permission; local: adds a JWK)",
    )
    add_storage_option(rotate)
    rotate.set_defaults(handler=rotate_keys)

    prune = actions.add_parser(
        "prune-transit",
        help="delete transit keys older than GATEKEEPER_TRANSIT_KEY_RETENTION_DAYS (crypto-shred); counts per tenant",
    )
    prune.add_argument("--tenant", help="tenant id (default: every registered tenant)")
    prune.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
    prune.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most this many deletions per tenant (default: what the timer does per run, 1000)",
    )
    add_storage_option(prune)
    prune.set_defaults(handler=prune_transit)

    status = actions.add_parser("status", help="list the tenant's data keys and the KEK versions wrapping them")
    status.add_argument("--tenant", required=True, help="tenant id")
    status.add_argument("--json", action="store_true", help="print JSON")
    add_storage_option(status)
    status.set_defaults(handler=key_status)


def _tenant(args: argparse.Namespace) -> str:
    from gatekeeper.commands.common import UsageError
    from gatekeeper.store.tables import InvalidTenantId, validate_tenant_id

    try:
        return validate_tenant_id(args.tenant)
    except InvalidTenantId as exc:
        raise UsageError(f"--tenant: {exc}") from None


def _ring(args: argparse.Namespace):  # -> DataKeyRing
    from gatekeeper.commands.common import UsageError
    from gatekeeper.store.keyring import DataKeyRing

    try:
        provider = services_from_args(args).key_provider
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"app settings: {exc}") from None
    return DataKeyRing(storage_from_args(args), provider)


def rotate_keys(args: argparse.Namespace) -> int:
    from gatekeeper.store.key_errors import KeyProviderError

    tenant = _tenant(args)
    ring = _ring(args)
    try:
        if args.new_kek_version:
            print(f"tenant {tenant}: new KEK version {ring.provider.new_version(tenant)}")
        result = ring.rewrap(tenant, retire_before=services_from_args(args).transit_pruner.cutoff())
        if result.rewrapped or result.already_current:
            print(
                f"tenant {tenant}: re-wrapped {len(result.rewrapped)} data key(s) under {result.kek_id}"
                f" ({len(result.already_current)} already current); no data was touched"
            )
        else:
            print(f"tenant {tenant}: no data keys yet, nothing to re-wrap")
        if result.past_retention:
            print(
                f"tenant {tenant}: {len(result.past_retention)} transit key(s) past retention not re-wrapped"
                " (deleted by the retention timer or `gatekeeper keys prune-transit`)"
            )
        if args.data_key:
            data_key_id = ring.create_data_key(tenant)
            print(f"tenant {tenant}: data key {data_key_id} is now active for new writes; older keys stay for reading")
        _record_kek_public(args, tenant, ring)
    except KeyProviderError as exc:
        print(f"gatekeeper: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _record_kek_public(args: argparse.Namespace, tenant: str, ring) -> None:  # ring: DataKeyRing
    """Write the current KEK version's public key into the tenant record, so ingestion wraps its transit keys
    with the current version (instances pick it up within the registry's cache period). A failure is an error
    (exit 1): a record left on an old version would keep sealing under it after that version is disabled. A
    record changed meanwhile (another import or rotation) is not overwritten: Conflict naming the tenant, exit 2
    from `gatekeeper.cli.main`, and the command is run again."""
    from gatekeeper.tenancy.registry import TenantRegistry

    registry = TenantRegistry(storage_from_args(args))
    if registry.get(tenant) is None:
        print(f"tenant {tenant}: not in the registry; no KEK public key recorded")
        return
    jwk = ring.provider.public_jwk(tenant)
    registry.set_kek_public(tenant, jwk)
    print(f"tenant {tenant}: ingestion now wraps transit keys with {jwk['kid']}")


def prune_transit(args: argparse.Namespace) -> int:
    from gatekeeper.commands.common import UsageError
    from gatekeeper.store.key_errors import KeyProviderError
    from gatekeeper.store.retention import MAX_DELETIONS_PER_RUN, TransitKeyPruner

    limit = MAX_DELETIONS_PER_RUN if args.limit is None else args.limit
    if not 1 <= limit <= 10**6:
        raise UsageError(f"--limit: must be a whole number from 1 to 1000000, not {limit}")
    services = services_from_args(args)
    if args.tenant is not None:
        tenants = [_tenant(args)]
    else:
        from gatekeeper.tenancy.registry import TenantRegistry

        tenants = [record.tenant_id for record in TenantRegistry(storage_from_args(args)).records()]
    pruner = TransitKeyPruner(storage_from_args(args), services.settings.transit_key_retention_days)
    verb = "would delete" if args.dry_run else "deleted"
    failed = False
    total = 0
    for tenant in tenants:
        try:
            result = pruner.prune(tenant, limit=limit, dry_run=args.dry_run)
        except KeyProviderError as exc:
            print(f"gatekeeper: error: {exc}", file=sys.stderr)
            failed = True
            continue
        total += len(result.deleted)
        extra = ""
        if result.already_gone or result.changed:
            extra = f"; {result.already_gone} already gone, {result.changed} changed meanwhile (next run)"
        if result.more:
            extra += f"; more left past the limit of {limit}, run again"
        print(
            f"tenant {tenant}: {verb} {len(result.deleted)} transit key(s) older than"
            f" {pruner.retention_days} days{extra}"
        )
    print(f"{verb} {total} transit key(s) in {len(tenants)} tenant(s)")
    return 1 if failed else 0


def key_status(args: argparse.Namespace) -> int:
    from gatekeeper.store.key_errors import KeyProviderError

    tenant = _tenant(args)
    ring = _ring(args)
    try:
        records = ring.records(tenant)
        active = ring.active_id(tenant)
    except KeyProviderError as exc:
        print(f"gatekeeper: error: {exc}", file=sys.stderr)
        return 1
    rows = [
        {
            "data_key_id": r.data_key_id,
            "active": r.data_key_id == active,
            "kek_id": r.kek_id,
            "algorithm": r.algorithm,
            "created": r.created.isoformat() if r.created else None,
        }
        for r in records
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"tenant {tenant}: no data keys yet")
    else:
        for row in rows:
            mark = "*" if row["active"] else " "
            print(f"{mark} {row['data_key_id']}  {row['created']}  {row['algorithm']}  {row['kek_id']}")
    return 0

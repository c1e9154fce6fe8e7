"""`gatekeeper identities link|list|import`: a tenant's identity map, every change audited.

The map links external identities (`github:login:<login>`, `github:id:<n>`, `azure-devops:id:<guid>`,
`azure-devops:descriptor:<d>`, `azure-devops:unique:<name>`, `<psa>:member:<id>`) to Entra object ids, so
a requester seen only by a GitHub login or an Azure DevOps id can never approve their own change.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gatekeeper.commands.common import add_storage_option, services_from_args

if TYPE_CHECKING:
    from gatekeeper.services import Services


def register(subparsers: argparse._SubParsersAction) -> None:
    identities = subparsers.add_parser("identities", help="link external identities to Entra object ids")
    actions = identities.add_subparsers(dest="identities_command", required=True, metavar="ACTION")

    link = actions.add_parser("link", help="link one external identity (provider:kind:value) to an object id")
    link.add_argument("--tenant", required=True)
    link.add_argument("external", help="e.g. github:login:octocat, azure-devops:unique:dev@contoso.com")
    link.add_argument("oid", help="the Entra object id of the person")
    link.add_argument("--note", default="", help="why (kept, sealed, with the link)")
    link.add_argument("--by", default=None, help="who links (recorded in the audit log; default: $USER)")
    add_storage_option(link)
    link.set_defaults(handler=link_identity)

    lister = actions.add_parser("list", help="show the tenant's identity map")
    lister.add_argument("--tenant", required=True)
    lister.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_storage_option(lister)
    lister.set_defaults(handler=list_identities)

    importer = actions.add_parser(
        "import", help="link identities from a JSON file ([{external, oid, note}]) or a GitHub org's SAML identities"
    )
    importer.add_argument("--tenant", required=True)
    importer.add_argument("file", type=Path, nargs="?")
    importer.add_argument(
        "--from-github-org",
        metavar="ORG",
        help="link members' GitHub logins and ids from the organisation's SAML/SCIM identities (the GitHub App "
        "needs Members: read there; addresses resolve through Graph GATEKEEPER_GRAPH_TENANT_ID)",
    )
    importer.add_argument("--installation-id", type=int, help="the GitHub App's installation on --from-github-org")
    importer.add_argument("--by", default=None, help="who imports (recorded in the audit log; default: $USER)")
    add_storage_option(importer)
    importer.set_defaults(handler=import_identities)


def _map_and_audit(args: argparse.Namespace, *, audited: bool) -> tuple[Any, Any]:
    """The tenant's identity map and, for changes, its audit log, opened first: a change that cannot be
    audited is not made."""
    from gatekeeper.commands.common import UsageError
    from gatekeeper.store.tables import InvalidTenantId, validate_tenant_id
    from gatekeeper.tenancy.identities import IdentityMap

    try:
        validate_tenant_id(args.tenant)
    except InvalidTenantId as exc:
        raise UsageError(f"--tenant: {exc}") from None
    services = services_from_args(args)
    try:
        storage, cipher = services.storage, services.cipher
        audit = services.audit_for(args.tenant) if audited else None
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"app settings: {exc}") from None
    return IdentityMap(storage, args.tenant, cipher), audit


def link_identity(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from gatekeeper.commands.common import UsageError
    from gatekeeper.tenancy.identities import IdentityLink

    try:
        link = IdentityLink(external=args.external, oid=args.oid, note=args.note)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "external"
        raise UsageError(f"{field}: {str(first['msg']).removeprefix('Value error, ')}") from None
    identity_map, audit = _map_and_audit(args, audited=True)
    previous = identity_map.link(link, audit, by=args.by or getpass.getuser())
    if previous == link.oid:
        print(f"{link.external} is already linked to {link.oid}")
    else:
        was = f" (was {previous})" if previous else ""
        print(f"linked {link.external} to {link.oid}{was} for {args.tenant}")
    return 0


def import_identities(args: argparse.Namespace) -> int:
    from gatekeeper.commands.common import UsageError
    from gatekeeper.tenancy.identities import IdentityFileError, load_identity_file

    if (args.file is None) == (args.from_github_org is None):
        raise UsageError("import: give either FILE or --from-github-org ORG")
    if args.from_github_org is not None:
        return _import_from_github(args)
    path: Path = args.file
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        links = load_identity_file(text)
    except IdentityFileError as exc:
        raise UsageError(f"{path}: {exc.field}: {exc.detail}") from None
    identity_map, audit = _map_and_audit(args, audited=True)
    by = args.by or getpass.getuser()
    changed = sum(1 for link in links if identity_map.link(link, audit, by=by, how="import") != link.oid)
    print(f"imported {len(links)} identities for {args.tenant} ({changed} changed)")
    return 0


def _import_from_github(args: argparse.Namespace) -> int:
    """The organisation's SAML/SCIM identities, resolved through the directory and linked (audited)."""
    from gatekeeper.commands.common import UsageError
    from gatekeeper.integrations.github_saml import SamlIdentitiesUnavailable, fill_identity_map, saml_members
    from gatekeeper.tenancy.identities import IdentityLink

    if not args.installation_id or args.installation_id < 1:
        raise UsageError("--installation-id: the GitHub App's installation id on the organisation is required")
    services = services_from_args(args)
    if not services.settings.github_app_id:
        raise UsageError("app settings: GATEKEEPER_GITHUB_APP_ID is not set (the GitHub App reads the identities)")
    if not services.settings.graph_tenant_id:
        raise UsageError("app settings: GATEKEEPER_GRAPH_TENANT_ID is not set (Graph resolves the addresses)")
    identity_map, audit = _map_and_audit(args, audited=True)
    app, directory = _github_app_and_directory(services)
    by = args.by or getpass.getuser()

    def link(external: str, oid: str) -> None:
        identity_map.link(IdentityLink(external=external, oid=oid), audit, by=by, how="github-saml")

    try:
        members = saml_members(app, args.installation_id, args.from_github_org)
        report = fill_identity_map(members, directory, link)
    except SamlIdentitiesUnavailable as exc:
        print(f"gatekeeper: {args.from_github_org}: SAML identities not available: {exc}", file=sys.stderr)
        return 1
    finally:
        directory.close()
    print(f"linked {len(report.linked)} identities from {len(members)} SAML members of {args.from_github_org}")
    for login, why in report.skipped:
        print(f"skipped {login}: {why}")
    return 0


def _github_app_and_directory(services: Services) -> tuple[Any, Any]:
    """The GitHub App and the Graph user directory from the app settings, with the process credential (the
    managed identity in Azure)."""
    from gatekeeper.integrations.github_app import GitHubApp
    from gatekeeper.integrations.graph_notify import make_graph_client
    from gatekeeper.integrations.graph_users import CachedUserDirectory, GraphUserDirectory
    from gatekeeper.services import github_app_signer

    settings = services.settings
    if not settings.github_app_id:
        raise RuntimeError("app setting GATEKEEPER_GITHUB_APP_ID is required but not set")
    app = GitHubApp(
        settings.github_app_id,
        github_app_signer(settings, lambda: services.credential),
        settings.github_api_url,
        allow_loopback_http=True,  # only loopback may be plain http (a local GitHub)
    )
    client, http = make_graph_client(services.credential, settings.graph_base_url)
    return app, CachedUserDirectory(GraphUserDirectory(client, http_client=http))


def list_identities(args: argparse.Namespace) -> int:
    identity_map, _ = _map_and_audit(args, audited=False)
    links = identity_map.links()
    if args.json:
        print(json.dumps([link.model_dump(mode="json") for link in links], indent=2))
        return 0
    if not links:
        print(f"no identities linked for {args.tenant}")
        return 0
    print(f"{'EXTERNAL':<48} {'OBJECT ID':<36} LINKED BY")
    for link in links:
        print(f"{link.external[:48]:<48} {link.oid:<36} {link.linked_by}")
    return 0

"""`gatekeeper admin`: post-deployment steps a Marketplace deployment cannot do by itself.

`smoke-test --url URL` checks an installed app end to end (gatekeeper/commands/smoke_test.py).

`grant-graph-permissions` gives the Function App's managed identity the Microsoft Graph application roles
in `gatekeeper.integrations.graph_admin.REQUIRED_GRAPH_ROLES`: TeamsActivity.Send and Mail.Send
(notifications), User.Read.All and GroupMember.Read.All (addresses, group checks), and
TeamsAppInstallation.ReadWriteForUser.All and AppCatalog.Read.All (the Teams bot installs its app for an
approver and finds the chat for the approval card). Run it after deploying and after each upgrade, signed in
(`az login`) as an Entra ID admin who may grant application permissions (Privileged Role Administrator or
Global Administrator); roles already granted are reported, not granted twice.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from azure.core.credentials import TokenCredential

from gatekeeper.commands.common import UsageError, services_from_args
from gatekeeper.integrations.graph_admin import REQUIRED_GRAPH_ROLES, GraphAdminError, RoleGrant

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def register(subparsers: argparse._SubParsersAction) -> None:
    admin = subparsers.add_parser("admin", help="post-deployment admin steps")
    steps = admin.add_subparsers(dest="step", required=True, metavar="STEP")
    grant = steps.add_parser(
        "grant-graph-permissions",
        help="grant the app's managed identity its Microsoft Graph application permissions "
        "(notifications, mail, directory reads, Teams app installation for the bot)",
    )
    who = grant.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--principal-id",
        help="object id of the managed identity's service principal (azd output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID)",
    )
    who.add_argument("--client-id", help="client id of the managed identity (AZURE_MANAGED_IDENTITY_CLIENT_ID)")
    grant.add_argument("--tenant", help="Entra ID tenant to sign in to (default: your az login tenant)")
    grant.add_argument(
        "--graph-url",
        default=None,
        help="Microsoft Graph root (default: the GATEKEEPER_GRAPH_BASE_URL setting, https://graph.microsoft.com/v1.0)",
    )
    grant.set_defaults(handler=run_grant)

    from gatekeeper.commands import smoke_test

    smoke_test.register(steps)


def _check_guid(value: str | None, field: str) -> None:
    if value is not None and not GUID.match(value):
        raise UsageError(f"command line: {field}: must be a GUID such as 3f2504e0-4f89-11d3-9a0c-0305e82c3301")


def _default_credential(tenant: str | None) -> TokenCredential:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(additionally_allowed_tenants=["*"], **({"tenant_id": tenant} if tenant else {}))


async def _grant(
    credential: TokenCredential, graph_url: str, principal_id: str | None, client_id: str | None
) -> tuple[str, list[RoleGrant]]:
    from gatekeeper.integrations.graph_admin import find_principal_id, grant_graph_roles
    from gatekeeper.integrations.graph_notify import make_graph_client

    client, http = make_graph_client(credential, graph_url)
    try:
        if principal_id is None:
            assert client_id is not None
            principal_id = await find_principal_id(client, client_id)
        return principal_id, await grant_graph_roles(client, principal_id, REQUIRED_GRAPH_ROLES)
    finally:
        await http.aclose()


def run_grant(args: argparse.Namespace, credential: Any = None) -> int:
    _check_guid(args.principal_id, "--principal-id")
    _check_guid(args.client_id, "--client-id")
    graph_url = args.graph_url or services_from_args(args).settings.graph_base_url
    credential = credential or _default_credential(args.tenant)
    try:
        principal_id, grants = asyncio.run(_grant(credential, graph_url, args.principal_id, args.client_id))
    except GraphAdminError as exc:
        raise UsageError(f"Microsoft Graph: {exc}") from exc
    for grant in grants:
        print(f"{grant.role}: {grant.status} (service principal {principal_id})")
    return 0

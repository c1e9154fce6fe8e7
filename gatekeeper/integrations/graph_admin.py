"""Grant the Function App's managed identity the Microsoft Graph application permissions it needs.

A Marketplace (or `azd`) deployment cannot grant Graph application permissions: that takes an Entra ID
admin. This does it through msgraph-sdk as app role assignments on the identity's service principal
(POST servicePrincipals/{graph}/appRoleAssignedTo), and is idempotent: roles already assigned are
reported, not assigned twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.models.app_role_assignment import AppRoleAssignment
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.generated.service_principals.service_principals_request_builder import ServicePrincipalsRequestBuilder

MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# TeamsActivity.Send: approval requests in the activity feed. Mail.Send: the mail fallback. User.Read.All and
# GroupMember.Read.All: a recipient's fallback address, and checkMemberGroups for approvers whose token lists
# too many groups. The Teams bot's 1:1 approval cards: TeamsAppInstallation.ReadWriteForUser.All installs the
# Teams app for an approver who has not got it (POST users/{id}/teamwork/installedApps) and reads the app's
# installation and its chat with the user (GET .../installedApps/{id}/chat); AppCatalog.Read.All finds the
# app's catalog id from the manifest id (GET appCatalogs/teamsApps?$filter=externalId eq '...'), which the
# install must name, since an app uploaded to the organisation's catalog gets an id of its own.
TEAMS_BOT_GRAPH_ROLES: tuple[str, ...] = ("TeamsAppInstallation.ReadWriteForUser.All", "AppCatalog.Read.All")
REQUIRED_GRAPH_ROLES: tuple[str, ...] = (
    "TeamsActivity.Send",
    "Mail.Send",
    "User.Read.All",
    "GroupMember.Read.All",
    *TEAMS_BOT_GRAPH_ROLES,
)


class GraphAdminError(Exception):
    """Graph did not have what the grant needs (no such service principal, no such app role)."""


@dataclass(frozen=True)
class RoleGrant:
    role: str
    role_id: str
    status: Literal["granted", "already granted"]


async def _service_principal_by_app_id(client: GraphServiceClient, app_id: str) -> ServicePrincipal:
    query = ServicePrincipalsRequestBuilder.ServicePrincipalsRequestBuilderGetQueryParameters(
        filter=f"appId eq '{app_id}'", select=["id", "appId", "displayName", "appRoles"]
    )
    page = await client.service_principals.get(request_configuration=RequestConfiguration(query_parameters=query))
    found = list(page.value or []) if page else []
    if len(found) != 1 or not found[0].id:
        raise GraphAdminError(f"no single service principal with appId {app_id} in this tenant (found {len(found)})")
    return found[0]


async def find_principal_id(client: GraphServiceClient, client_id: str) -> str:
    """The service principal (object) id of a managed identity or app, from its client (app) id."""
    principal = await _service_principal_by_app_id(client, client_id)
    return str(principal.id)


async def _existing_role_ids(client: GraphServiceClient, principal_id: str, resource_id: str) -> set[str]:
    builder = client.service_principals.by_service_principal_id(principal_id).app_role_assignments
    page: Any = await builder.get()
    existing: set[str] = set()
    while page is not None:
        for assignment in page.value or []:
            if str(assignment.resource_id) == resource_id and assignment.app_role_id is not None:
                existing.add(str(assignment.app_role_id))
        next_link = getattr(page, "odata_next_link", None)
        page = await builder.with_url(next_link).get() if next_link else None
    return existing


async def grant_graph_roles(
    client: GraphServiceClient, principal_id: str, roles: Iterable[str] = REQUIRED_GRAPH_ROLES
) -> list[RoleGrant]:
    """Assign each Graph application role to `principal_id` unless it already has it."""
    principal_id = str(uuid.UUID(principal_id))
    graph = await _service_principal_by_app_id(client, MICROSOFT_GRAPH_APP_ID)
    graph_id = str(graph.id)
    by_value = {
        r.value: r
        for r in graph.app_roles or []
        if r.value and r.id and "Application" in (r.allowed_member_types or [])
    }
    wanted = list(roles)
    unknown = [role for role in wanted if role not in by_value]
    if unknown:
        raise GraphAdminError(f"Microsoft Graph has no application role {', '.join(unknown)}")
    existing = await _existing_role_ids(client, principal_id, graph_id)
    results = []
    for role in wanted:
        role_id = str(by_value[role].id)
        if role_id in existing:
            results.append(RoleGrant(role, role_id, "already granted"))
            continue
        body = AppRoleAssignment(
            principal_id=uuid.UUID(principal_id), resource_id=uuid.UUID(graph_id), app_role_id=uuid.UUID(role_id)
        )
        await client.service_principals.by_service_principal_id(graph_id).app_role_assigned_to.post(body)
        results.append(RoleGrant(role, role_id, "granted"))
    return results

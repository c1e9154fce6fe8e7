"""`gatekeeper admin grant-graph-permissions` with the real msgraph-sdk against a local Graph v1.0 stand-in.

The stand-in answers the documented wire format of the three calls the grant makes: the Microsoft Graph
service principal by appId (with its appRoles), the identity's appRoleAssignments (paged), and
POST servicePrincipals/{id}/appRoleAssignedTo. Role ids are Microsoft Graph's published ones.
"""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

import pytest

from devstack.server import LocalServer, StaticTokenCredential
from gatekeeper.commands.admin import run_grant
from tests.infra.conftest import run_gatekeeper

TOKEN = "graph-admin-token-for-tests-0123456789"
GRAPH_SP = "6b0e4b7e-0000-4000-8000-0000000000aa"
MI_CLIENT = "9c1d2e3f-1111-4222-8333-444455556666"
MI_PRINCIPAL = "1a2b3c4d-5555-4666-8777-888899990000"
ROLE_IDS = {
    "TeamsActivity.Send": "a267235f-af13-44dc-8385-c1dc93023186",
    "Mail.Send": "b633e1c5-b582-4048-a93e-9f11b44c7e96",
    "User.Read.All": "df021288-bdef-4463-88db-98f22de89214",
    "GroupMember.Read.All": "98830695-27a2-44f7-8c18-0c3ebc9698f6",
    "TeamsAppInstallation.ReadWriteForUser.All": "74ef0291-ca83-4d02-8c7e-d2391e6a444f",
    "AppCatalog.Read.All": "e12dae10-5a57-4817-b79d-dfbec5348930",
}
ALL_ROLES = sorted(ROLE_IDS)
BEFORE_THE_BOT = ["TeamsActivity.Send", "Mail.Send", "User.Read.All", "GroupMember.Read.All"]


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


class LocalGraphAdmin(LocalServer):
    name = "local Microsoft Graph (service principals)"

    def __init__(self, existing: list[str] = (), published: list[str] | None = None):  # type: ignore[assignment]
        super().__init__()
        self.published = {name: ROLE_IDS[name] for name in (published or ROLE_IDS)}
        self.assignments = [self._assignment(ROLE_IDS[r]) for r in existing]
        # an assignment to another resource, on page 1: must not count as a Graph role
        self.assignments.insert(
            0,
            {
                "id": "x",
                "principalId": MI_PRINCIPAL,
                "appRoleId": ROLE_IDS["Mail.Send"],
                "resourceId": "0d0d0d0d-0000-4000-8000-000000000000",
            },
        )

    @staticmethod
    def _assignment(role_id: str) -> dict[str, Any]:
        return {
            "id": uuid.uuid4().hex,
            "principalId": MI_PRINCIPAL,
            "resourceId": GRAPH_SP,
            "appRoleId": role_id,
            "principalType": "ServicePrincipal",
        }

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1.0"

    def route(self, method, path, query, headers, body):
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return _json(401, {"error": {"code": "InvalidAuthenticationToken", "message": "no token"}})
        if method == "GET" and path == "/v1.0/servicePrincipals":
            wanted = query.get("$filter", [""])[0]
            if wanted == "appId eq '00000003-0000-0000-c000-000000000000'":
                roles = [
                    {
                        "id": rid,
                        "value": value,
                        "allowedMemberTypes": ["Application"],
                        "isEnabled": True,
                        "displayName": value,
                    }
                    for value, rid in self.published.items()
                ]
                return _json(
                    200,
                    {
                        "value": [
                            {
                                "id": GRAPH_SP,
                                "appId": "00000003-0000-0000-c000-000000000000",
                                "displayName": "Microsoft Graph",
                                "appRoles": roles,
                            }
                        ]
                    },
                )
            if wanted == f"appId eq '{MI_CLIENT}'":
                return _json(200, {"value": [{"id": MI_PRINCIPAL, "appId": MI_CLIENT, "appRoles": []}]})
            return _json(200, {"value": []})
        if method == "GET" and path == f"/v1.0/servicePrincipals/{MI_PRINCIPAL}/appRoleAssignments":
            page = int(query.get("page", ["0"])[0])
            items = self.assignments[page : page + 1]
            result: dict[str, Any] = {"value": items}
            if page + 1 < len(self.assignments):
                result["@odata.nextLink"] = (
                    f"{self.base_url}/servicePrincipals/{MI_PRINCIPAL}/appRoleAssignments?page={page + 1}"
                )
            return _json(200, result)
        if method == "POST" and path == f"/v1.0/servicePrincipals/{GRAPH_SP}/appRoleAssignedTo":
            document = json.loads(body)
            if document.get("resourceId") != GRAPH_SP or document.get("principalId") != MI_PRINCIPAL:
                return _json(400, {"error": {"code": "Request_BadRequest", "message": "wrong ids"}})
            if any(a["appRoleId"] == document["appRoleId"] and a["resourceId"] == GRAPH_SP for a in self.assignments):
                return _json(
                    400,
                    {
                        "error": {
                            "code": "Request_BadRequest",
                            "message": "Permission being assigned already exists on the object",
                        }
                    },
                )
            created = self._assignment(document["appRoleId"])
            self.assignments.append(created)
            return _json(201, created)
        return _json(404, {"error": {"code": "Request_ResourceNotFound", "message": path}})


def _args(server: LocalGraphAdmin, **extra: Any) -> argparse.Namespace:
    values = {"principal_id": MI_PRINCIPAL, "client_id": None, "tenant": None, "graph_url": server.base_url}
    values.update(extra)
    return argparse.Namespace(**values)


def _graph_roles(server: LocalGraphAdmin) -> list[str]:
    by_id = {v: k for k, v in ROLE_IDS.items()}
    return sorted(by_id[a["appRoleId"]] for a in server.assignments if a["resourceId"] == GRAPH_SP)


def test_grants_every_role(capsys):
    with LocalGraphAdmin() as server:
        assert run_grant(_args(server), credential=StaticTokenCredential(TOKEN)) == 0
        assert _graph_roles(server) == ALL_ROLES
        posts = server.requests_to("/appRoleAssignedTo", "POST")
        assert len(posts) == len(ALL_ROLES) == 6
    out = capsys.readouterr().out
    assert f"TeamsActivity.Send: granted (service principal {MI_PRINCIPAL})" in out
    for role in ALL_ROLES:
        assert f"{role}: granted" in out


def test_is_idempotent_and_reports_existing_assignments(capsys):
    with LocalGraphAdmin(existing=["TeamsActivity.Send"]) as server:
        run_grant(_args(server), credential=StaticTokenCredential(TOKEN))
        assert len(server.requests_to("/appRoleAssignedTo", "POST")) == len(ALL_ROLES) - 1
        run_grant(_args(server), credential=StaticTokenCredential(TOKEN))
        assert len(server.requests_to("/appRoleAssignedTo", "POST")) == len(ALL_ROLES) - 1  # nothing new
        assert _graph_roles(server) == ALL_ROLES
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("TeamsActivity.Send: already granted")
    assert out[1].startswith("Mail.Send: granted")
    second_run = out[len(ALL_ROLES) :]
    assert len(second_run) == len(ALL_ROLES)
    assert all(line.split(":")[1].strip().startswith("already granted") for line in second_run)


def test_finds_the_principal_from_the_client_id():
    with LocalGraphAdmin() as server:
        run_grant(_args(server, principal_id=None, client_id=MI_CLIENT), credential=StaticTokenCredential(TOKEN))
        assert _graph_roles(server) == ALL_ROLES


def test_unknown_client_id_is_a_clear_error():
    from gatekeeper.commands.common import UsageError

    with LocalGraphAdmin() as server, pytest.raises(UsageError, match="no single service principal with appId"):
        run_grant(
            _args(server, principal_id=None, client_id=str(uuid.uuid4())), credential=StaticTokenCredential(TOKEN)
        )


def test_bad_principal_id_is_refused_naming_the_field():
    result = run_gatekeeper("admin", "grant-graph-permissions", "--principal-id", "not-a-guid")
    assert result.returncode == 2
    assert "--principal-id: must be a GUID" in result.stderr


def test_an_upgrade_grants_the_teams_bot_roles_to_an_identity_that_has_the_older_ones(capsys):
    """The bot installs its Teams app for an approver (TeamsAppInstallation.ReadWriteForUser.All) after finding
    the app's catalog id (AppCatalog.Read.All); a deployment granted before the bot gets exactly these two."""
    with LocalGraphAdmin(existing=BEFORE_THE_BOT) as server:
        assert run_grant(_args(server), credential=StaticTokenCredential(TOKEN)) == 0
        posted = [json.loads(r.body)["appRoleId"] for r in server.requests_to("/appRoleAssignedTo", "POST")]
        assert posted == [ROLE_IDS["TeamsAppInstallation.ReadWriteForUser.All"], ROLE_IDS["AppCatalog.Read.All"]]
        assert _graph_roles(server) == ALL_ROLES
    out = capsys.readouterr().out
    assert f"TeamsAppInstallation.ReadWriteForUser.All: granted (service principal {MI_PRINCIPAL})" in out
    assert "AppCatalog.Read.All: granted" in out
    assert "TeamsActivity.Send: already granted" in out


def test_a_graph_without_a_required_role_is_refused_naming_it_and_grants_nothing():
    from gatekeeper.commands.common import UsageError

    older_graph = [r for r in ROLE_IDS if r != "TeamsAppInstallation.ReadWriteForUser.All"]
    with LocalGraphAdmin(published=older_graph) as server:
        with pytest.raises(UsageError, match=r"no application role TeamsAppInstallation\.ReadWriteForUser\.All"):
            run_grant(_args(server), credential=StaticTokenCredential(TOKEN))
        assert server.requests_to("/appRoleAssignedTo", "POST") == []

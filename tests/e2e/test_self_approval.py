"""No self-approval, whatever form the requester's identity takes (issue 10, class 2).

Each gate comes in through the real registered HTTP function (GitHub webhook, Azure DevOps check, generic
API), is queued sealed, dispatched and run by the real orchestrators in the local runner over Azurite; the
requester is resolved through the tenant's identity map and the local Microsoft Graph (real msgraph-sdk);
the approver decides with a token from the local Entra issuer, validated by the real validator.

The person: Dev, object id DEV, UPN dev@contoso.onmicrosoft.com, mail dev@contoso.com, proxy addresses
SMTP:dev.primary@contoso.com and smtp:dev.alias@contoso.com; GitHub login Dev-GH (id 4242), Azure DevOps
identity ADO_ID, ConnectWise member "dev1". In every form, Dev must not be able to approve their own gate.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest

from devstack.entra_issuer import LocalEntraIssuer
from devstack.gates import LocalGates, local_gates
from devstack.graph import LocalGraphServer
from devstack.runner import ManualClock
from devstack.server import StaticTokenCredential
from functions.http import problem_body, status_of
from gatekeeper.audit.log import AuditLog
from gatekeeper.contracts.gate import chain_instance_id
from gatekeeper.errors import GatekeeperError
from gatekeeper.events.model import EventKind, EventSource, PipelineEvent
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.ingest.queue import decode_message
from gatekeeper.integrations.callbacks import PipelineCallbacks
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import CachedUserDirectory, GraphUserDirectory
from gatekeeper.integrations.outbox import OutboxNotifier
from gatekeeper.policy import load_policy
from gatekeeper.security.entra import EntraTokenValidator
from gatekeeper.services import set_services
from gatekeeper.settings import Settings
from gatekeeper.store.tables import TablePurpose
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap
from tests.conftest import ROOT, SHARED_FIXTURES
from tests.support.gatekeeper_env import (
    ADO_CHECK_SECRET,
    API_KEY,
    ENTRA_TENANT,
    GatekeeperEnv,
    github_request,
    http_function,
    make_env,
)

pytestmark = pytest.mark.azurite

AUDIENCE = "api://gatekeeper"
GRAPH_TOKEN = "graph-token-for-self-approval-tests-0123"
START = datetime(2030, 6, 3, 10, 0, tzinfo=UTC)

DEV = "0d0d0d0d-0000-4000-8000-00000000de00"
ANNA = "0a0a0a0a-0000-4000-8000-00000000a000"
PIET = "0b0b0b0b-0000-4000-8000-00000000b000"
ADO_ID = "6d5e4f3a-2b1c-4d0e-9f8a-7b6c5d4e3f2a"
DEV_UPN = "dev@contoso.onmicrosoft.com"

USERS = {
    DEV: {
        "userPrincipalName": DEV_UPN,
        "mail": "dev@contoso.com",
        "proxyAddresses": ["SMTP:dev.primary@contoso.com", "smtp:dev.alias@contoso.com", "SIP:dev@contoso.com"],
    },
    ANNA: {"userPrincipalName": "anna@contoso.onmicrosoft.com", "mail": "anna@contoso.com", "proxyAddresses": []},
    PIET: {"userPrincipalName": "piet@contoso.onmicrosoft.com", "mail": "piet@contoso.com", "proxyAddresses": []},
}


def policy(unresolved: str = "raise") -> dict[str, Any]:
    approvers = [DEV, ANNA, PIET]  # Dev is an approver too: only self-approval may refuse them
    return {
        "version": 1,
        "unresolved_requester": unresolved,
        "defaults": {"level": "L2"},
        "rules": [
            {
                "name": "prod",
                "match": {"environments": ["production"]},
                "level": "L2",
                "approval": {"stages": [{"name": "cab", "approvers": approvers, "quorum": 1, "timeout": "PT1H"}]},
            }
        ],
    }


@dataclass
class World:
    env: GatekeeperEnv
    gates: LocalGates
    issuer: LocalEntraIssuer
    graph: LocalGraphServer
    audit: AuditLog
    identity_map: IdentityMap

    def link(self, external: str, oid: str) -> None:
        self.identity_map.link(IdentityLink(external=external, oid=oid), self.audit, by="ops")

    def ingest(self, function: str, request: func.HttpRequest) -> str:
        """Through the real registered function, the queue and the dispatcher; the gate's instance id."""
        response = http_function(function)(request)
        assert response.status_code in (200, 202), response.get_body()
        [text] = self.env.drain()
        event = decode_message(self.env.services.sealer, text).event
        return self.gates.submit(event)

    def generic(self, body: dict[str, Any], *, bearer_oid: str | None = None, upn: str | None = None) -> str:
        headers = {"Content-Type": "application/json"}
        if bearer_oid:
            token = self.issuer.issue(bearer_oid, ENTRA_TENANT, AUDIENCE, upn=upn)
            headers["Authorization"] = f"Bearer {token}"
        else:
            headers.update({"X-Gatekeeper-Tenant": self.env.tenant_id, "x-functions-key": API_KEY})
        document = {"kind": "gate_request", "environment": "production", "runId": uuid.uuid4().hex, **body}
        request = func.HttpRequest(
            "POST", "http://localhost/api/events", headers=headers, body=json.dumps(document).encode()
        )
        return self.ingest("generic_events", request)

    def ado_check(self, body: dict[str, Any]) -> str:
        sample = json.loads((SHARED_FIXTURES / "azure-devops/invoke-azure-function-check.request.json").read_text())
        headers = dict(sample["headers"], AuthToken="job-token-0123456789", TaskInstanceId=str(uuid.uuid4()))
        headers["X-Gatekeeper-Check-Secret"] = ADO_CHECK_SECRET
        request = func.HttpRequest(
            "POST",
            "http://localhost/api/azure-devops/checks",
            headers=headers,
            body=json.dumps({"environment": "production", "runId": "77", **body}).encode(),
        )
        return self.ingest("azure_devops_check", request)

    def github(self, login: str, user_id: int) -> str:
        payload = copy.deepcopy(DPR)
        payload["deployment"]["id"] = int(uuid.uuid4().int % 10**9)
        for user in (payload["sender"], payload["deployment"]["creator"]):
            user.update(login=login, id=user_id)
        return self.ingest("github_webhook", github_request("deployment_protection_rule", payload))

    def decide(self, gate: str, oid: str, *, upn: str | None = None, decision: str = "approve") -> tuple[int, dict]:
        token = self.issuer.issue(oid, ENTRA_TENANT, AUDIENCE, upn=upn, issued_at=datetime.now(UTC).timestamp())
        try:
            return self.gates.decide(gate, {"Authorization": f"Bearer {token}"}, decision)
        except GatekeeperError as problem:
            return status_of(problem), problem_body(problem)

    def view(self, gate: str) -> dict[str, Any]:
        token = self.issuer.issue(ANNA, ENTRA_TENANT, AUDIENCE)
        return self.gates.decisions.state(gate, self.gates.identify({"Authorization": f"Bearer {token}"}))[1]

    def status(self, gate: str) -> Any:
        return self.gates.runner.status(gate)


DPR = json.loads((ROOT / "tests/fixtures/github/deployment_protection_rule.requested.json").read_text())


@pytest.fixture
def world(storage_connection_string, tmp_path) -> Iterator[World]:
    yield from _world(storage_connection_string, tmp_path, "raise")


@pytest.fixture
def deny_world(storage_connection_string, tmp_path) -> Iterator[World]:
    yield from _world(storage_connection_string, tmp_path, "deny")


def _world(connection: str, tmp_path: Any, unresolved: str) -> Iterator[World]:
    env = make_env(connection, tmp_path / "keys")
    document = load_policy(policy(unresolved))
    with LocalEntraIssuer() as issuer, LocalGraphServer(GRAPH_TOKEN, users=USERS) as graph:
        env.services.token_validator = EntraTokenValidator(
            AUDIENCE, issuer.authority_host, allowed_tenants=env.services.is_registered_entra_tenant
        )
        set_services(env.services)
        client, http = make_graph_client(StaticTokenCredential(GRAPH_TOKEN), graph.base_url)
        directory = CachedUserDirectory(GraphUserDirectory(client, http_client=http))
        audit = AuditLog(env.storage, env.services.sealer, None, env.tenant_id, checkpoint_every=10_000)
        gates = local_gates(
            env.storage,
            env.services.sealer,
            decider=PolicyDecider(lambda _t: document),
            audit_for=lambda _t: audit,
            notifier=OutboxNotifier(tmp_path / "outbox"),
            callbacks=PipelineCallbacks(),
            entra_tenants_for=lambda t: (ENTRA_TENANT,) if t == env.tenant_id else (),
            token_validator=env.services.token_validator,
            clock=ManualClock(START),
            settings=Settings(trust_easyauth_header=False),
            directory=directory,
        )
        try:
            yield World(env, gates, issuer, graph, audit, IdentityMap(env.storage, env.tenant_id, env.services.sealer))
        finally:
            set_services(None)
            directory.close()


def assert_self_approval_refused(world: World, gate: str, *, upn: str | None = DEV_UPN) -> None:
    status, body = world.decide(gate, DEV, upn=upn)
    assert status == 403, body
    assert body["type"].endswith("/self-approval")
    assert world.status(gate).runtime_status == "Running"
    assert world.view(gate)["votes"] == []


# ----- the identity forms -------------------------------------------------------------------------------


def test_generic_bearer_requester_is_the_token_oid(world: World):
    gate = world.generic({"actor": "Dev"}, bearer_oid=DEV, upn=DEV_UPN)
    assert_self_approval_refused(world, gate)
    assert world.view(gate)["requester"]["resolved"] is True


def test_generic_bearer_caller_naming_someone_else_as_actor_still_cannot_approve(world: World):
    gate = world.generic({"actor": "someone-else"}, bearer_oid=DEV, upn=DEV_UPN)
    assert_self_approval_refused(world, gate)
    view = world.view(gate)["requester"]
    assert view["display"] == "someone-else" and view["oid"] == DEV  # the claim is shown, the token decides
    assert world.decide(gate, ANNA)[0] == 202  # nobody else is blocked by the claim
    assert world.status(gate).output["status"] == "approved"


def test_github_login_mapped_to_the_upns_object_id(world: World):
    world.link("github:login:Dev-GH", DEV)
    gate = world.github("Dev-GH", 999_001)  # the id is not linked: the login alone resolves
    assert_self_approval_refused(world, gate)
    assert world.view(gate)["requester"]["resolved"] is True


def test_github_numeric_id_mapped_survives_a_renamed_login(world: World):
    world.link("github:id:4242", DEV)
    gate = world.github("dev-renamed", 4242)
    assert_self_approval_refused(world, gate)


def test_azure_devops_identity_id_mapped(world: World):
    world.link(f"azure-devops:id:{ADO_ID}", DEV)
    gate = world.ado_check({"requestedBy": ADO_ID})
    assert_self_approval_refused(world, gate)


def test_azure_devops_display_name_with_the_unique_name(world: World):
    gate = world.ado_check({"requestedBy": "Dev User", "requestedByEmail": "DEV@contoso.com"})
    assert_self_approval_refused(world, gate)


def test_azure_devops_unique_name_in_another_case_than_the_upn(world: World):
    gate = world.ado_check({"requestedBy": "DEV@Contoso.OnMicrosoft.com"})
    assert_self_approval_refused(world, gate, upn="Dev@CONTOSO.onmicrosoft.com")
    assert world.view(gate)["requester"]["resolved"] is True  # the UPN resolved through Graph


def test_email_versus_upn_through_graph_aliases(world: World):
    gate = world.generic({"actor": "dev@contoso.com"})  # function key: the actor is only a claim
    assert_self_approval_refused(world, gate)


@pytest.mark.parametrize("alias", ["Dev.Alias@Contoso.com", "dev.primary@CONTOSO.COM", "SMTP:Dev.Alias@CONTOSO.com"])
def test_proxy_address_aliases_in_smtp_and_SMTP_forms(world: World, alias: str):
    gate = world.generic({"actor": alias})
    assert_self_approval_refused(world, gate)


def test_token_without_preferred_username(world: World):
    gate = world.generic({"actor": "dev@contoso.com"})
    assert_self_approval_refused(world, gate, upn=None)


def test_psa_member_id_mapped(world: World):
    world.link("connectwise:member:dev1", DEV)
    event = PipelineEvent(
        tenant_id=world.env.tenant_id,
        source=EventSource.CONNECTWISE,
        kind=EventKind.GATE_REQUEST,
        environment="production",
        actor="dev1",
        run_id=uuid.uuid4().hex,
    )
    gate = world.gates.submit(event)
    assert_self_approval_refused(world, gate)


# ----- unresolved requesters ----------------------------------------------------------------------------


def test_event_without_actor_requires_one_extra_distinct_approver(world: World, tmp_path):
    gate = world.generic({})
    view = world.view(gate)
    assert view["requester"]["resolved"] is False
    assert (
        "requester unresolved" in view["requester"]["note"]
        and "one extra distinct approver" in view["requester"]["note"]
    )
    assert view["stage"]["quorum"] == 2  # the policy asked for 1
    [request] = [
        n["notification"]
        for n in OutboxNotifier(tmp_path / "outbox").read_all(world.env.tenant_id)
        if n["notification"]["kind"] == "approval_request"
    ]
    assert "Requester unresolved" in request["text"]
    assert world.decide(gate, ANNA)[0] == 202
    assert world.status(gate).runtime_status == "Running"  # one approval is no longer enough
    assert world.decide(gate, PIET)[0] == 202
    assert world.status(gate).output["status"] == "approved"


def test_unlinked_github_login_is_unresolved_and_raises_the_bar(world: World):
    gate = world.github("stranger-gh", 31337)
    view = world.view(gate)
    assert view["requester"]["resolved"] is False and view["stage"]["quorum"] == 2
    assert "github:login:stranger-gh" in view["requester"]["seen_as"]


def test_deny_policy_denies_an_unresolved_requester(deny_world: World):
    gate = deny_world.generic({})
    output = deny_world.status(gate).output
    assert output["status"] == "rejected" and output["reason"] == "blocked by policy"
    [decision] = [r for r in deny_world.audit.records() if r.instance_id == gate and r.kind == "decision"][:1]
    assert any("unresolved_requester: deny" in reason for reason in decision.data["reasons"])


def test_deny_policy_lets_a_resolved_requester_through_to_approval(deny_world: World):
    gate = deny_world.generic({"actor": "x"}, bearer_oid=DEV, upn=DEV_UPN)
    assert deny_world.status(gate).runtime_status == "Running"
    assert deny_world.decide(gate, ANNA)[0] == 202
    assert deny_world.status(gate).output["status"] == "approved"


def test_identity_links_are_audited_and_sealed(world: World):
    world.link("github:login:Dev-GH", DEV)
    [record] = [r for r in world.audit.records() if r.kind == "identity_linked"]
    assert record.data["external"] == "github:login:dev-gh" and record.data["oid"] == DEV
    table = world.env.storage.tenant_table(world.env.tenant_id, TablePurpose.IDENTITIES)
    [row] = list(table.list_entities())
    assert "dev-gh" not in json.dumps({k: str(v) for k, v in row.items()}).lower()


def test_graph_alias_lookups_are_cached(world: World):
    gate = world.generic({"actor": "dev@contoso.com"})
    before = len([r for r in world.graph.requests if "/users/" in r.path])
    for _ in range(3):
        world.decide(gate, DEV, upn=DEV_UPN)
    after = len([r for r in world.graph.requests if "/users/" in r.path])
    assert after - before <= 1


def test_a_directory_that_cannot_answer_is_503_and_counts_no_vote(world: World):
    gate = world.generic({"actor": "dev.alias@contoso.com"})
    world.graph.fail_next(5, 500, path_contains="/users/")
    status, body = world.decide(gate, DEV, upn=DEV_UPN)
    assert status == 503 and body["type"].endswith("/identity-lookup-unavailable")
    assert world.view(gate)["votes"] == [] and world.status(gate).runtime_status == "Running"


def test_a_resolved_requester_needs_no_directory_to_refuse_or_admit(world: World):
    world.link("github:login:Dev-GH", DEV)
    gate = world.github("Dev-GH", 4242)
    world.graph.fail_next(50, 500, path_contains="/users/")
    assert_self_approval_refused(world, gate)
    assert world.decide(gate, ANNA)[0] == 202
    assert world.status(chain_instance_id(gate)).output["status"] == "approved"  # the GitHub callback is next

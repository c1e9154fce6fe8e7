"""Identity edges (issue 21: survivors of `make mutation MODULES=identity`).

The requester a gate records is what self-approval is checked against: an address found in the directory
must resolve to its object id and bring every alias, a name the directory does not know must stay unresolved
(not crash), the length limits hold at their documented values, and nothing is "resolved" by default. An
EasyAuth app token (sub == oid, no delegated scope) is an application, not a person who could vote.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.security.principal import principal_from_client_principal_header
from gatekeeper.security.requester import (
    MAX_VALUE,
    DirectoryUser,
    Requester,
    RequesterResolver,
    is_linkable,
    normalise_address,
)

TOKEN = "graph-token-for-requester-gap-tests-0001"
DEV = "0d0d0d0d-0000-4000-8000-00000000de00"
DEV_UPN = "dev@contoso.onmicrosoft.com"
USERS = {
    DEV: {
        "userPrincipalName": DEV_UPN,
        "mail": "Dev@Contoso.com",
        "proxyAddresses": ["SMTP:dev.primary@contoso.com", "smtp:dev.alias@contoso.com"],
    }
}
OID = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.fixture
def directory() -> Iterator[GraphUserDirectory]:
    with LocalGraphServer(TOKEN, users=USERS) as graph:
        client, http = make_graph_client(StaticTokenCredential(TOKEN), graph.base_url)
        with GraphUserDirectory(client, http_client=http) as found:
            yield found


def test_an_address_the_directory_knows_resolves_to_its_object_id_and_aliases(directory):
    seen = ["azure-devops:unique:Dev@Contoso.onmicrosoft.com"]
    requester = RequesterResolver(directory=directory).resolve("t1", seen)
    assert (requester.resolved, requester.oid) == (True, DEV)
    assert {"dev@contoso.com", "dev.primary@contoso.com", "dev.alias@contoso.com"} <= set(requester.identities())


def test_an_address_the_directory_does_not_know_stays_unresolved(directory):
    requester = RequesterResolver(directory=directory).resolve("t1", ["azure-devops:unique:stranger@contoso.com"])
    assert (requester.resolved, requester.oid) == (False, None)
    assert requester.note and "no Entra identity is linked" in requester.note


def test_a_requester_is_unresolved_unless_an_object_id_was_found():
    assert Requester().resolved is False
    assert Requester(seen_as=("github:login:dev-gh",)).resolved is False


def test_addresses_and_displays_are_bounded_at_256_characters():
    assert MAX_VALUE == 256
    domain = "@contoso.com"
    at_limit = "d" * (MAX_VALUE - len(domain)) + domain
    assert normalise_address(at_limit) == at_limit
    assert normalise_address("d" + at_limit) is None
    assert Requester(display="x" * 256).display == "x" * 256
    with pytest.raises(ValidationError):
        Requester(display="x" * 257)


@pytest.mark.parametrize(
    ("identity", "linkable"),
    [
        ("github:login:dev-gh", True),
        ("github:id:4242", True),
        ("azure-devops:unique:dev@contoso.com", True),
        ("connectwise:member:dev1", True),
        ("github:org:octo-org", False),  # an organisation is not a person
        ("claim:actor:dev", False),  # a free-text actor cannot be linked
        ("entra:oid:" + DEV, False),  # already an object id
    ],
)
def test_only_person_identities_of_known_providers_are_linkable(identity, linkable):
    assert is_linkable(identity) is linkable


def _easyauth(*claims: tuple[str, str]) -> str:
    document = {
        "auth_typ": "aad",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": OID},
            {"typ": "http://schemas.microsoft.com/identity/claims/tenantid", "val": TID},
            *({"typ": t, "val": v} for t, v in claims),
        ],
    }
    return base64.b64encode(json.dumps(document).encode()).decode()


def test_an_easyauth_app_token_without_idtyp_is_app_only_by_sub_and_scope():
    """Without `idtyp`, an app token has sub == oid and no delegated scope; a user token carries a scope."""
    app = principal_from_client_principal_header(_easyauth(("sub", OID)))
    assert app.app_only is True
    user = principal_from_client_principal_header(_easyauth(("sub", OID), ("scp", "Gates.Decide")))
    assert user.app_only is False


def test_every_identity_a_requester_was_seen_as_counts_after_an_object_id():
    requester = Requester(seen_as=("entra:oid:" + DEV, "github:login:dev-gh", "azure-devops:unique:Dev@Contoso.com"))
    assert requester.identities() == (DEV, "github:login:dev-gh", "dev@contoso.com")


def test_a_recorded_requester_and_a_directory_user_are_immutable():
    requester = Requester(oid=DEV, resolved=True)
    with pytest.raises(ValidationError):
        requester.oid = "0e0e0e0e-0000-4000-8000-00000000e000"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        DirectoryUser(oid=DEV).oid = "x"  # type: ignore[misc]

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
from gatekeeper.audit.log import AuditLog
from gatekeeper.errors import GatekeeperError, Unauthenticated
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import GraphUserDirectory
from gatekeeper.security.identity import identify_caller
from gatekeeper.security.principal import (
    MAX_HEADER_CHARS,
    Principal,
    easyauth_principal,
    principal_from_client_principal_header,
)
from gatekeeper.security.requester import (
    MAX_VALUE,
    DirectoryUser,
    Requester,
    RequesterResolver,
    external_id,
    is_linkable,
    normalise_address,
    parse_external,
    user_addresses,
    value_of,
)
from gatekeeper.tenancy.identities import IdentityLink, IdentityMap
from tests.support.gatekeeper_env import make_env

TOKEN = "graph-token-for-requester-gap-tests-0001"
DEV = "0d0d0d0d-0000-4000-8000-00000000de00"
ANNA = "0a0a0a0a-0000-4000-8000-00000000a000"
DEV_UPN = "dev@contoso.onmicrosoft.com"
USERS = {
    DEV: {
        "userPrincipalName": DEV_UPN,
        "displayName": "Dev Ops",
        "mail": "Dev@Contoso.com",
        "proxyAddresses": ["SMTP:dev.primary@contoso.com", "smtp:dev.alias@contoso.com"],
    },
    ANNA: {
        "userPrincipalName": "anna@contoso.onmicrosoft.com",
        "displayName": "A" * 300,  # longer than a requester keeps
        "mail": "anna@contoso.com",
        "proxyAddresses": [],
    },
}
OID = "5f6c2b1e-8d3a-4c1b-9e7f-0a1b2c3d4e5f"
TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.fixture
def graph() -> Iterator[LocalGraphServer]:
    with LocalGraphServer(TOKEN, users=USERS) as server:
        yield server


@pytest.fixture
def directory(graph: LocalGraphServer) -> Iterator[GraphUserDirectory]:
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


# ----- the tenant's identity map (Azurite) -------------------------------------------------------------------

OTHER = "0e0e0e0e-0000-4000-8000-00000000e000"


@pytest.fixture
def identity_map(storage_connection_string, tmp_path) -> Iterator[tuple[str, IdentityMap]]:
    env = make_env(storage_connection_string, tmp_path / "keys")
    audit = AuditLog(env.storage, env.services.sealer, None, env.tenant_id, checkpoint_every=10_000)
    found = IdentityMap(env.storage, env.tenant_id, env.services.sealer)
    found.link(IdentityLink(external="github:login:dev-gh", oid=DEV), audit, by="ops")
    found.link(IdentityLink(external="github:id:4242", oid=OTHER), audit, by="ops")
    yield env.tenant_id, found


def test_a_linked_identity_resolves_to_its_object_id(identity_map, directory):
    tenant, found = identity_map
    resolver = RequesterResolver(identity_map_for=lambda _t: found, directory=directory)
    requester = resolver.resolve(tenant, ["github:login:dev-gh"], display="Dev-GH")
    assert (requester.resolved, requester.oid, requester.note) == (True, DEV, None)
    assert "dev.alias@contoso.com" in requester.aliases  # the directory's addresses for the linked object id
    assert requester.display == "Dev-GH"


def test_every_further_object_id_a_requester_maps_to_is_an_alias(identity_map):
    tenant, found = identity_map
    resolver = RequesterResolver(identity_map_for=lambda _t: found)
    requester = resolver.resolve(tenant, ["entra:oid:" + DEV, "github:login:dev-gh", "github:id:4242"])
    assert requester.oid == DEV and OTHER in requester.aliases and DEV not in requester.aliases
    assert set(requester.identities()) >= {DEV, OTHER}


def test_an_unlinked_requester_says_what_it_was_seen_as(identity_map):
    tenant, found = identity_map
    resolver = RequesterResolver(identity_map_for=lambda _t: found)
    unlinked = resolver.resolve(tenant, ["github:login:someone-else"])
    assert (unlinked.resolved, unlinked.note) == (False, "no Entra identity is linked to github:login:someone-else")
    nobody = resolver.resolve(tenant, [])
    assert nobody.note == "no Entra identity is linked to this request: it names no actor"


def test_a_directory_that_cannot_answer_leaves_the_requester_unresolved_and_says_so(directory, graph):
    graph.fail_next(50, 500, path_contains="/users/")
    requester = RequesterResolver(directory=directory).resolve("t1", ["azure-devops:unique:dev@contoso.com"])
    assert requester.resolved is False
    assert requester.note and requester.note.startswith("the directory could not be asked")


def test_value_of_takes_the_value_of_a_namespaced_identity_only():
    assert value_of("github:login:dev-gh") == "dev-gh"
    assert value_of("azure-devops:unique:a:b") == "a:b"
    assert value_of("smtp:dev@contoso.com") == "smtp:dev@contoso.com"  # not provider:kind:value
    assert value_of(DEV) == DEV


def test_a_principal_needs_an_object_id_and_asks_no_directory_by_default():
    person = Principal(oid="x", tid=TID, auth="bearer")
    assert person.groups_overage is False and person.app_only is False
    assert Principal(oid="o" * 128, tid="t" * 128, auth="bearer").tid == "t" * 128
    for bad in ({"oid": ""}, {"oid": "o" * 129}, {"tid": "t" * 129}):
        with pytest.raises(ValidationError):
            Principal(**{"oid": "x", "tid": TID, "auth": "bearer", **bad})


def test_a_requester_known_by_object_ids_only_needs_no_names():
    assert Requester(oid=DEV, resolved=True, aliases=(OTHER,)).needs_names() is False
    assert Requester(oid=DEV, resolved=True, aliases=("dev@contoso.com",)).needs_names() is True
    assert Requester(oid="a" * 64).oid == "a" * 64
    with pytest.raises(ValidationError):
        Requester(oid="a" * 65)


def test_an_easyauth_header_may_be_64_kib_unpadded():
    base = json.loads(base64.b64decode(_easyauth(("sub", "pairwise-sub"))))
    filler = {"typ": "filler", "val": ""}
    base["claims"].append(filler)
    assert MAX_HEADER_CHARS == 64 * 1024
    raw_size = 64 * 1024 // 4 * 3  # 64 KiB of base64 carries exactly this many bytes (written out: not the constant)
    filler["val"] = "f" * (raw_size - len(json.dumps(base).encode()))
    header = base64.b64encode(json.dumps(base).encode()).decode()
    assert len(header) == 64 * 1024 and not header.endswith("=")
    assert principal_from_client_principal_header(header).oid == OID
    longer = dict(base, claims=[*base["claims"][:-1], {"typ": "filler", "val": filler["val"] + "fff"}])
    too_large = base64.b64encode(json.dumps(longer).encode()).decode()  # valid, 4 characters over the limit
    with pytest.raises(GatekeeperError) as info:
        principal_from_client_principal_header(too_large)
    assert "too large" in info.value.detail
    with pytest.raises(GatekeeperError) as info:
        short = _easyauth(("sub", "pairwise-sub"))
        principal_from_client_principal_header(short[:8] + "!" + short[8:])  # not the base64 alphabet
    assert "base64" in info.value.detail
    # App Service sends padded base64; a header whose padding was stripped still decodes
    for size in range(3):
        document = dict(base, claims=[*base["claims"][:-1], {"typ": "filler", "val": "f" * size}])
        unpadded = base64.b64encode(json.dumps(document).encode()).decode().rstrip("=")
        assert principal_from_client_principal_header(unpadded).oid == OID


def test_only_an_entra_object_id_is_taken_for_one():
    """An Azure DevOps identity id is a GUID too, but not an Entra object id: it resolves through the map only."""
    resolver = RequesterResolver()
    assert resolver.resolve("t1", ["azure-devops:id:6d5e4f3a-2b1c-4d0e-9f8a-7b6c5d4e3f2a"]).oid is None
    assert resolver.resolve("t1", ["entra:oid:not-a-guid"]).oid is None
    assert resolver.resolve("t1", ["entra:oid:" + DEV]).oid == DEV


def test_the_first_address_the_directory_knows_decides_and_no_other(directory):
    seen = ["azure-devops:unique:dev@contoso.onmicrosoft.com", "azure-devops:unique:anna@contoso.onmicrosoft.com"]
    requester = RequesterResolver(directory=directory).resolve("t1", seen)
    assert requester.oid == DEV
    assert ANNA not in requester.aliases and "anna@contoso.com" not in requester.aliases


def test_the_first_value_of_a_repeated_claim_counts():
    assert principal_from_client_principal_header(_easyauth(("sub", OID), ("sub", "pairwise"))).app_only is True
    assert principal_from_client_principal_header(_easyauth(("sub", "pairwise"), ("sub", OID))).app_only is False


def test_external_ids_refuse_booleans_and_every_control_character():
    assert external_id("github", "id", True) is None and external_id("github", "id", False) is None
    assert external_id("github", "id", 4242) == "github:id:4242"
    for code in (0, 9, 31):
        assert external_id("claim", "actor", f"a{chr(code)}b") is None, code
    assert external_id("claim", "actor", "a b") == "claim:actor:a b"


def test_a_long_display_name_is_cut_not_refused():
    requester = RequesterResolver().resolve("t1", ["claim:actor:dev"], display="D" * 300)
    assert requester.display == "D" * 256
    assert RequesterResolver().resolve("t1", ["claim:actor:dev"], display="").display is None


def test_the_upn_comes_from_the_name_claim_type_only_when_the_header_names_one():
    document = json.loads(base64.b64decode(_easyauth(("emailaddress", "ada@contoso.com"))))
    assert principal_from_client_principal_header(base64.b64encode(json.dumps(document).encode()).decode()).upn is None
    document["name_typ"] = "emailaddress"
    named = principal_from_client_principal_header(base64.b64encode(json.dumps(document).encode()).decode())
    assert named.upn == "ada@contoso.com"


def test_the_first_object_id_claim_counts():
    second = "0f0f0f0f-0000-4000-8000-00000000f000"
    header = _easyauth(("http://schemas.microsoft.com/identity/claims/objectidentifier", second))  # a repeat
    assert principal_from_client_principal_header(header).oid == OID


def test_the_first_idtyp_claim_decides_app_only():
    assert principal_from_client_principal_header(_easyauth(("idtyp", "app"), ("idtyp", "user"))).app_only is True
    assert principal_from_client_principal_header(_easyauth(("idtyp", "user"), ("idtyp", "app"))).app_only is False


def test_a_non_smtp_proxy_address_does_not_hide_the_ones_after_it():
    found = user_addresses(None, None, ["SIP:dev@contoso.com", "X500:/o=x", "smtp:dev.alias@contoso.com"])
    assert found == {"dev.alias@contoso.com"}


def test_a_requester_without_an_object_id_needs_names():
    assert Requester(seen_as=("github:login:dev-gh",)).needs_names() is True
    assert Requester().needs_names() is False


def test_external_values_may_be_256_characters():
    value = "v" * 256
    assert external_id("claim", "actor", value) == "claim:actor:" + value
    assert external_id("claim", "actor", value + "v") is None


def test_roles_are_read_from_the_role_claim_type_the_header_names():
    document = json.loads(base64.b64decode(_easyauth(("urn:custom:role", "Gatekeeper.Auditor"))))
    plain = principal_from_client_principal_header(base64.b64encode(json.dumps(document).encode()).decode())
    assert "Gatekeeper.Auditor" not in plain.roles
    document["role_typ"] = "urn:custom:role"
    named = principal_from_client_principal_header(base64.b64encode(json.dumps(document).encode()).decode())
    assert "Gatekeeper.Auditor" in named.roles


# ----- fifth day (session 9): the directory's names for the requester, the stored bounds, Slack links --------


def test_the_requester_is_named_by_the_directory_entry_of_its_own_object_id(directory):
    """An approver is shown the directory's name of the requester's object id (the first one found), never the
    name of a further object id the requester is also known by."""
    requester = RequesterResolver(directory=directory).resolve("t1", ["entra:oid:" + DEV, "entra:oid:" + ANNA])
    assert (requester.oid, requester.display_name, requester.upn) == (DEV, "Dev Ops", DEV_UPN)
    assert ANNA in requester.aliases
    reversed_order = RequesterResolver(directory=directory).resolve("t1", ["entra:oid:" + ANNA, "entra:oid:" + DEV])
    assert (reversed_order.oid, reversed_order.upn) == (ANNA, "anna@contoso.onmicrosoft.com")

    unknown = "0b0b0b0b-0000-4000-8000-00000000b000"  # not in the directory: it must not borrow Anna's name
    unnamed = RequesterResolver(directory=directory).resolve("t1", ["entra:oid:" + unknown, "entra:oid:" + ANNA])
    assert (unnamed.oid, unnamed.display_name, unnamed.upn) == (unknown, None, None)


def test_a_long_directory_name_is_shown_cut_at_256_characters(directory):
    requester = RequesterResolver(directory=directory).resolve("t1", ["entra:oid:" + ANNA])
    assert requester.display_name == "A" * 256


@pytest.mark.parametrize("field", ["display_name", "upn"])
def test_a_stored_requester_keeps_directory_names_of_up_to_256_characters(field):
    """The bound is the one the resolver cuts at: a requester it built always loads again, a longer one never."""
    assert getattr(Requester(**{field: "n" * 256}), field) == "n" * 256
    with pytest.raises(ValidationError):
        Requester(**{field: "n" * 257})


def test_a_slack_identity_is_linked_only_in_its_workspace_and_user_form():
    assert parse_external("slack:user:T0123ABCD/U0456EFGH") == "slack:user:t0123abcd/u0456efgh"
    assert parse_external("slack:user:T0123ABCD/W0456EFGH") == "slack:user:t0123abcd/w0456efgh"
    for bad in ("slack:user:U0456EFGH", "slack:user:T0123ABCD/B0456EFGH", "slack:user:T0123ABCD/U0456EFGH/x"):
        with pytest.raises(ValueError, match="a Slack user is <workspace id>/<user id>"):
            parse_external(bad)


def test_trusting_the_platform_principal_header_is_never_switched_on_by_a_bare_positional_true():
    """`trust_easyauth` / `trusted` are keyword-only: no call site trusts a client-sent X-MS-CLIENT-PRINCIPAL
    header by a positional True (on a host without App Service authentication anyone can send it)."""
    forged = {"X-MS-CLIENT-PRINCIPAL": _easyauth(("sub", "pairwise-sub"))}
    with pytest.raises(TypeError):
        identify_caller(forged, None, True)  # type: ignore[misc]
    with pytest.raises(TypeError):
        easyauth_principal(forged, True)  # type: ignore[misc]
    with pytest.raises(Unauthenticated):  # no bearer token: the forged header was not read
        identify_caller(forged, None, trust_easyauth=False)
    assert easyauth_principal(forged, trusted=False) is None

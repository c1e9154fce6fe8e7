"""A user's addresses through the real msgraph-sdk against the local Microsoft Graph (`GET /users/{id}`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.graph import LocalGraphServer
from devstack.server import StaticTokenCredential
from gatekeeper.integrations.graph_notify import make_graph_client
from gatekeeper.integrations.graph_users import CachedUserDirectory, GraphUserDirectory
from gatekeeper.security.requester import DirectoryUnavailable

TOKEN = "graph-token-for-user-directory-tests-01"
DEV = "0d0d0d0d-0000-4000-8000-00000000de00"
USERS = {
    DEV: {
        "displayName": "Dev",
        "userPrincipalName": "Dev@Contoso.onmicrosoft.com",
        "mail": "Dev@Contoso.com",
        "proxyAddresses": ["SMTP:dev@contoso.com", "smtp:Dev.Alias@contoso.com", "SIP:dev@contoso.com", "X500:/o=x"],
    }
}


@pytest.fixture
def graph() -> Iterator[LocalGraphServer]:
    with LocalGraphServer(TOKEN, users=USERS) as server:
        yield server


@pytest.fixture
def directory(graph: LocalGraphServer) -> Iterator[GraphUserDirectory]:
    client, http = make_graph_client(StaticTokenCredential(TOKEN), graph.base_url)
    with GraphUserDirectory(client, http_client=http) as found:
        yield found


def test_a_user_by_object_id_has_every_smtp_address_normalised(directory, graph):
    user = directory.user(DEV)
    assert user is not None and user.oid == DEV
    assert user.addresses == {"dev@contoso.onmicrosoft.com", "dev@contoso.com", "dev.alias@contoso.com"}
    [request] = [r for r in graph.requests if r.path.endswith(DEV)]
    assert set(request.query["$select"][0].split(",")) == {
        "id",
        "displayName",
        "mail",
        "userPrincipalName",
        "proxyAddresses",
    }
    # shown to approvers as who asked (issue 12), as the directory spells them
    assert user.display_name == "Dev" and user.upn == "Dev@Contoso.onmicrosoft.com"


def test_a_user_by_principal_name_in_any_case(directory):
    user = directory.user("DEV@contoso.ONMICROSOFT.com")
    assert user is not None and user.oid == DEV


def test_a_secondary_address_or_a_stranger_is_nobody(directory):
    assert directory.user("dev.alias@contoso.com") is None  # Graph finds users by id or UPN only
    assert directory.user("00000000-0000-4000-8000-000000000000") is None
    assert directory.user("not a key/../x") is None  # never put into a URL


def test_a_failing_directory_raises_directory_unavailable(directory, graph):
    graph.fail_next(1, 500, path_contains="/users/")
    with pytest.raises(DirectoryUnavailable):
        directory.user(DEV)


def test_answers_are_cached_for_the_ttl(graph):
    now = [0.0]
    client, http = make_graph_client(StaticTokenCredential(TOKEN), graph.base_url)
    inner = GraphUserDirectory(client, http_client=http)
    cached = CachedUserDirectory(inner, ttl_seconds=60, clock=lambda: now[0])
    try:
        assert cached.user(DEV) == cached.user(DEV.upper()) == cached.user(DEV)
        assert cached.user("nobody@contoso.com") is None and cached.user("nobody@contoso.com") is None
        assert len(graph.requests) == 2
        now[0] = 61.0
        assert cached.user(DEV) is not None
        assert len(graph.requests) == 3
    finally:
        cached.close()

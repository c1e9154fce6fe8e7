"""`gatekeeper.client.oidc`: the step client's GitHub OIDC token, fetched from the runner's endpoint (a local
double) and cached. Cases a hand sweep of planted bugs found untested (docs/mutation.md, second sweep)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devstack.server import LocalServer, Response, json_response
from gatekeeper.client.errors import InvalidRequest, Unavailable
from gatekeeper.client.oidc import MAX_TOKEN_CHARS, RENEW_BEFORE_SECONDS, GitHubOidcTokenProvider
from tests.support.actions_contract_double import GitHubIdTokenEndpoint, unsigned_jwt


class Answering(LocalServer):
    """A token endpoint that answers whatever the test sets, counting the requests to each path."""

    name = "id-token endpoint answering as told"

    def __init__(self) -> None:
        super().__init__()
        self.answer: Response = json_response(200, {"value": "x"})
        self.paths: list[str] = []

    def route(self, method: str, path: str, query: Any, headers: dict[str, str], body: bytes) -> Response:
        self.paths.append(path)
        if path == "/elsewhere":
            return json_response(200, {"value": unsigned_jwt({"exp": int(time.time()) + 600})})
        return self.answer


def test_a_missing_request_token_or_audience_is_bad_input_naming_it():
    with pytest.raises(InvalidRequest) as token:
        GitHubOidcTokenProvider("https://runner/idtoken?api-version=2.0", "", "api://gk")
    assert token.value.field == "credentials"
    with pytest.raises(InvalidRequest) as audience:
        GitHubOidcTokenProvider("https://runner/idtoken?api-version=2.0", "req", "")
    assert audience.value.field == "audience"


def test_the_token_is_renewed_at_exactly_a_minute_before_it_expires():
    now = [1_000_000.0]
    with GitHubIdTokenEndpoint("req", lambda aud: unsigned_jwt({"exp": int(now[0]) + 300, "t": now[0]})) as endpoint:
        provider = GitHubOidcTokenProvider(endpoint.request_url, "req", "api://gk", clock=lambda: now[0])
        first = provider()
        now[0] += 300 - RENEW_BEFORE_SECONDS  # exactly a minute left
        assert provider() != first and provider.fetches == 2


def test_a_token_without_exp_is_kept_two_minutes_at_most():
    now = [1_000_000.0]
    with GitHubIdTokenEndpoint("req", lambda aud: unsigned_jwt({"aud": aud, "t": now[0]})) as endpoint:
        provider = GitHubOidcTokenProvider(endpoint.request_url, "req", "api://gk", clock=lambda: now[0])
        provider()
        now[0] += RENEW_BEFORE_SECONDS - 1
        provider()
        assert provider.fetches == 1
        now[0] += 1  # the fallback lifetime (two minutes) has under a minute left
        provider()
        assert provider.fetches == 2


@pytest.mark.parametrize(
    "answer",
    [
        (302, {"Location": "/elsewhere"}, b""),
        json_response(201, {"value": "a.b.c"}),
        json_response(203, {"value": "a.b.c"}),
        json_response(200, {"value": ""}),
        json_response(200, {"value": "x" * (MAX_TOKEN_CHARS + 1)}),
    ],
    ids=["redirect", "201", "203", "empty", "one-over"],
)
def test_only_a_200_with_a_bounded_token_is_a_token_and_redirects_are_not_followed(answer):
    with Answering() as endpoint:
        status, headers, body = answer
        if "Location" in headers:
            headers = {"Location": endpoint.url + "/elsewhere"}
        endpoint.answer = (status, headers, body)
        provider = GitHubOidcTokenProvider(endpoint.url + "/idtoken?api-version=2.0", "req", "api://gk")
        with pytest.raises(Unavailable):
            provider()
        assert "/elsewhere" not in endpoint.paths  # the request token is never carried to another URL


def test_a_token_of_exactly_the_bound_is_taken():
    with Answering() as endpoint:
        endpoint.answer = json_response(200, {"value": "x" * MAX_TOKEN_CHARS})
        provider = GitHubOidcTokenProvider(endpoint.url + "/idtoken?api-version=2.0", "req", "api://gk")
        assert len(provider()) == MAX_TOKEN_CHARS

"""`source_identities`: tenant lookup hints from unverified requests; never raises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.events.identity import source_identities
from gatekeeper.events.model import EventSource
from tests.conftest import load_fixture

CONNECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "connectors"


def test_github_most_specific_first() -> None:
    payload = load_fixture("github/deployment_review.requested.payload.json")
    assert source_identities(EventSource.GITHUB, payload) == [
        "github:repo:terraform-test-github/sample-app",
        "github:installation:35490125",
        "github:org:terraform-test-github",
    ]


def test_github_without_installation_or_organization_uses_the_owner() -> None:
    payload = load_fixture("github/deployment_status.payload.json")
    assert source_identities("github", payload) == ["github:repo:codertocat/hello-world", "github:org:codertocat"]


def test_azure_devops_from_resource_containers_and_plan_url_header() -> None:
    body = load_fixture("azure-devops/build.complete.json")
    account = "azure-devops:account:f844ec47-a9db-4511-8281-8b63f4eaf94e"
    assert source_identities(EventSource.AZURE_DEVOPS, body) == [account]  # the published sample has no baseUrl
    body["resourceContainers"]["collection"]["baseUrl"] = "https://dev.azure.com/Fabrikam-Fiber-Inc"
    body["resourceContainers"]["account"]["baseUrl"] = "https://dev.azure.com/fabrikam-fiber-inc/"
    assert source_identities(EventSource.AZURE_DEVOPS, body) == [
        "azure-devops:org:https://dev.azure.com/fabrikam-fiber-inc/",
        account,
    ]
    body["resourceContainers"]["account"]["id"] = "not-a-guid"
    assert source_identities(EventSource.AZURE_DEVOPS, body) == [
        "azure-devops:org:https://dev.azure.com/fabrikam-fiber-inc/"
    ]
    check = load_fixture("azure-devops/invoke-azure-function-check.request.json")
    assert source_identities(EventSource.AZURE_DEVOPS, {}, {"planurl": check["headers"]["PlanUrl"]}) == [
        "azure-devops:org:https://dev.azure.com/fabrikam/"
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("connectwise.ticket-approved", ["connectwise:company:fabrikammsp"]),
        ("autotask.ticket-alert", ["autotask:account:29683501"]),
        ("halopsa.asset-alert", ["halopsa:instance:contoso.halopsa.com"]),
        ("ninjarmm.condition-triggered", ["ninjarmm:org:42"]),
    ],
)
def test_connectors(name: str, expected: list[str]) -> None:
    message = json.loads((CONNECTORS / f"{name}.json").read_text())
    assert source_identities(message["connector"], message) == expected


def test_connector_payload_hint_follows_the_envelope_account() -> None:
    message = json.loads((CONNECTORS / "ninjarmm.condition-triggered.json").read_text())
    message["account"] = "7"
    assert source_identities(EventSource.NINJARMM, message) == ["ninjarmm:org:7", "ninjarmm:org:42"]
    assert source_identities(EventSource.NINJARMM, message["payload"]) == ["ninjarmm:org:42"]


def test_generic_has_no_hints() -> None:
    assert source_identities(EventSource.GENERIC, {"repository": {"full_name": "a/b"}}) == []


class Exploding(dict):
    def get(self, *_: Any) -> Any:
        raise RuntimeError("boom")

    def items(self) -> Any:
        raise RuntimeError("boom")


GARBAGE: list[Any] = [
    None,
    42,
    "text",
    b"\x00\xff",
    [],
    [{"repository": {"full_name": "a/b"}}],
    {"repository": "a/b"},
    {"repository": {"full_name": 7, "owner": "x"}},
    {"repository": {"full_name": "a/b/c\n"}, "installation": {"id": True}},
    {"installation": {"id": -1}, "organization": {"login": ["x"]}},
    {"organization": {"login": "x" * 10_000}},
    {"resourceContainers": {"collection": {"baseUrl": "javascript:alert(1)"}}},
    {"resourceContainers": {"account": {"baseUrl": "http://[::1"}}},
    {"resourceContainers": ["nope"]},
    {"connector": "connectwise", "account": {"x": 1}, "payload": "not a mapping"},
    {"connector": "halopsa", "account": "https://", "payload": {}},
    {"payload": {"device": {"organizationId": 1.5}}, "Fields": None},
    Exploding(),
]


@pytest.mark.parametrize("source", [*EventSource, "nonsense", None, 7])
@pytest.mark.parametrize("payload", GARBAGE)
def test_garbage_never_raises(source: Any, payload: Any) -> None:
    result = source_identities(source, payload, headers={"PlanUrl": "\x00bad"})
    assert isinstance(result, list)
    assert all(isinstance(item, str) and "\n" not in item and len(item) < 400 for item in result)


def test_garbage_headers_never_raise() -> None:
    assert source_identities(EventSource.AZURE_DEVOPS, {}, headers=["PlanUrl"]) == []  # type: ignore[arg-type]
    assert source_identities(EventSource.AZURE_DEVOPS, {}, headers={1: 2}) == []  # type: ignore[dict-item]

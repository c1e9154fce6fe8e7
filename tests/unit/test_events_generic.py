"""The generic events API: request model, normalisation, field-naming errors, business keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gatekeeper.errors import InvalidInput
from gatekeeper.events.generic import parse_generic
from gatekeeper.events.model import ActionKind, EventKind, EventSource, PipelineEvent, WebhookCallback

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "generic"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def parse(body: Any) -> PipelineEvent:
    return parse_generic(body, tenant_id="contoso")


def test_gate_request_fixture() -> None:
    event = parse(fixture("gate-request"))
    assert (event.source, event.kind, event.action) == (EventSource.GENERIC, EventKind.GATE_REQUEST, ActionKind.DEPLOY)
    assert event.environment == "production"
    assert event.run_id == "1287"
    assert event.labels == ("pci", "customer-facing")
    assert event.callback == WebhookCallback(url="https://ci.contoso.com/gatekeeper/callback/1287")
    assert [e.kind for e in event.evidence] == ["tests", "coverage"]
    assert event.evidence[1].data == {"lineRate": 0.84}
    assert event.delivery_id == "web-shop-1287-production"


def test_status_fixtures_normalise_status_and_numeric_run_id() -> None:
    deployed = parse(fixture("deployment-status"))
    assert (deployed.kind, deployed.status, deployed.run_id) == (EventKind.DEPLOYMENT_STATUS, "success", "1287")
    assert deployed.action is None
    run = parse(fixture("run-status"))
    assert (run.kind, run.status, run.action) == (EventKind.RUN_STATUS, "failure", ActionKind.BUILD)


def test_gate_request_defaults_to_deploy() -> None:
    assert parse({"kind": "gate_request", "environment": "prod", "runId": "9"}).action is ActionKind.DEPLOY


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("invalid-gate-request-without-environment", "environment"),
        ("invalid-http-callback", "callbackUrl"),
    ],
)
def test_invalid_fixtures_name_the_field(name: str, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(fixture(name))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"environment": "prod", "runId": "1"}, "kind", "is required"),
        ({"kind": "gate_request", "environment": "prod"}, "runId", "is required"),
        ({"kind": "gate_request", "runId": "1"}, "environment", "is required when kind is 'gate_request'"),
        ({"kind": "deployment_status", "environment": "prod", "runId": "1"}, "status", "is required when kind"),
        ({"kind": "deployment_status", "status": "success", "runId": "1"}, "environment", "is required when kind"),
        ({"kind": "run_status", "runId": "1"}, "status", "is required when kind is 'run_status'"),
        ({"kind": "gate_request", "environment": "prod", "runId": "1", "enviroment": "x"}, "enviroment", "not allowed"),
        ({"kind": "promote", "environment": "prod", "runId": "1"}, "kind", "should be"),
        ({"kind": "gate_request", "environment": "prod", "runId": True}, "runId", "valid string"),
        ({"kind": "gate_request", "environment": "prod", "runId": "1", "action": "yolo"}, "action", "should be"),
        ({"kind": "gate_request", "environment": "prod", "runId": "1", "labels": ["a b"]}, "labels[0]", "pattern"),
        (
            {"kind": "gate_request", "environment": "prod", "runId": "1", "evidence": [{"kind": "tests"}]},
            "evidence[0]",
            "exactly one of 'uri' or 'data'",
        ),
        (
            {"kind": "gate_request", "environment": "prod", "runId": "1", "evidence": [{"kind": "x", "uri": "u"}]},
            "evidence[0].kind",
            "should be",
        ),
    ],
)
def test_bad_bodies_name_the_field(body: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    assert caught.value.field == field
    assert words in caught.value.detail
    assert caught.value.detail.startswith(f"generic event: field '{field}'")


@pytest.mark.parametrize(
    "url",
    [
        "http://ci.contoso.com/cb",
        "ftp://ci.contoso.com/cb",
        "https://user:pass@ci.contoso.com/cb",
        "/relative/cb",
        "https://",
    ],
)
def test_callback_url_rules_refuse(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse({"kind": "gate_request", "environment": "prod", "runId": "1", "callbackUrl": url})
    assert caught.value.field == "callbackUrl"
    assert "pass" not in caught.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:7071/cb",
        "http://127.0.0.1/cb",
        "http://[::1]:8080/cb",
        "http://127.0.0.2/cb",
        "http://app.localhost:7071/cb",
        "http://[::ffff:127.0.0.1]:7071/cb",
    ],
)
def test_callback_url_allows_local_http_for_development(url: str) -> None:
    event = parse({"kind": "gate_request", "environment": "prod", "runId": "1", "callbackUrl": url})
    assert event.callback == WebhookCallback(url=url)


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f.0.0.1", "10.0.0.1", "[::ffff:10.0.0.1]", "ci.example"])
def test_callback_url_refuses_plain_http_to_anything_but_a_plainly_written_loopback(host: str) -> None:
    """The classifier of the send-time check (gatekeeper.addresses): loopback spelled oddly is not local."""
    with pytest.raises(InvalidInput) as caught:
        parse({"kind": "gate_request", "environment": "prod", "runId": "1", "callbackUrl": f"http://{host}/cb"})
    assert caught.value.field == "callbackUrl"
    assert "must use https (http is allowed only for localhost and 127.0.0.1)" in caught.value.detail


def test_non_object_body() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse([1, 2, 3])
    assert caught.value.field == "$"


def test_business_keys() -> None:
    base = {"kind": "gate_request", "environment": "prod", "runId": "1"}
    first = parse({**base, "idempotencyKey": "a"})
    again = parse({**base, "idempotencyKey": "b"})
    assert first.business_key == again.business_key
    others = [
        parse({**base, "environment": "staging"}),
        parse({**base, "runId": "2"}),
        parse({**base, "kind": "run_status", "status": "success"}),
    ]
    assert len({first.business_key, *(o.business_key for o in others)}) == 4
    assert parse({**base, "runId": 1}).business_key == first.business_key


def test_unknown_field_names_are_echoed_short_and_printable() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse({"kind": "gate_request", "environment": "prod", "runId": "1", "x\n" + "y" * 5000: 1})
    assert caught.value.field is not None
    assert len(caught.value.field) <= 64
    assert "\n" not in caught.value.detail

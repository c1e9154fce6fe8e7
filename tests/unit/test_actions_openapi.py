"""`docs/openapi/actions.yaml` and the action models (`gatekeeper.actions.model`, the state view's fields in
`gatekeeper.actions.service`) must describe the same contract."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gatekeeper.actions.model import (
    MAX_ARGV,
    ActionContext,
    ActionRequest,
    ActionTarget,
    ReportRequest,
    parse_model,
)
from gatekeeper.actions.state import MAX_WAIT_SECONDS, STATE_FIELDS, STATUSES
from gatekeeper.errors import InvalidInput
from gatekeeper.events.model import MAX_COMMAND_CHARS, ActionKind

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "actions.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
DOC_URI = "urn:gatekeeper:openapi:actions"
SCHEMAS = DOC["components"]["schemas"]
PATHS = DOC["paths"]


def validator(name: str) -> Draft202012Validator:
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=registry)


def examples(path: str, schema: str) -> list[tuple[str, str, dict[str, Any]]]:
    content = PATHS[path]["post"]["requestBody"]["content"]["application/json"]
    return [(schema, name, ex["value"]) for name, ex in content["examples"].items()]


ALL_EXAMPLES = examples("/api/actions", "ActionRequest") + examples("/api/actions/{action_id}/report", "ReportRequest")


def test_every_route_and_auth_scheme_is_documented() -> None:
    assert DOC["openapi"].startswith("3.1")
    assert set(PATHS) == {
        "/api/actions",
        "/api/actions/{action_id}",
        "/api/actions/{action_id}/cancel",
        "/api/actions/{action_id}/report",
    }
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["githubOidc"]["scheme"] == schemes["entraId"]["scheme"] == "bearer"
    assert schemes["apiKey"]["name"] == "x-functions-key" and schemes["tenant"]["name"] == "X-Gatekeeper-Tenant"
    assert set(PATHS["/api/actions"]["post"]["responses"]) >= {"200", "202", "401", "409", "422"}


@pytest.mark.parametrize(("schema", "name", "value"), ALL_EXAMPLES, ids=[f"{s}:{n}" for s, n, _ in ALL_EXAMPLES])
def test_examples_are_valid_for_the_document_and_the_model(schema: str, name: str, value: dict[str, Any]) -> None:
    assert list(validator(schema).iter_errors(value)) == []
    model = {"ActionRequest": ActionRequest, "ReportRequest": ReportRequest}[schema]
    parse_model(model, value)


@pytest.mark.parametrize(
    ("doc_name", "model"),
    [
        ("ActionRequest", ActionRequest),
        ("ActionTarget", ActionTarget),
        ("ActionContext", ActionContext),
        ("ReportRequest", ReportRequest),
    ],
)
def test_field_names_and_required_fields_agree(doc_name: str, model: Any) -> None:
    doc_schema = SCHEMAS[doc_name]
    assert set(doc_schema["properties"]) == set(model.model_fields)
    required = {name for name, field in model.model_fields.items() if field.is_required()}
    assert set(doc_schema.get("required", [])) == required
    assert doc_schema["additionalProperties"] is False


def test_enumerations_and_bounds_agree() -> None:
    props = SCHEMAS["ActionRequest"]["properties"]
    assert set(props["action"]["enum"]) == {a.value for a in ActionKind}
    text, argv = props["command"]["oneOf"]
    assert text["maxLength"] == MAX_COMMAND_CHARS and argv["maxItems"] == MAX_ARGV
    outcome = typing.get_args(ReportRequest.model_fields["outcome"].annotation)
    assert set(SCHEMAS["ReportRequest"]["properties"]["outcome"]["enum"]) == set(outcome)
    wait = next(p for p in PATHS["/api/actions/{action_id}"]["get"]["parameters"] if p.get("name") == "wait")
    assert wait["schema"]["maximum"] == MAX_WAIT_SECONDS


def test_the_state_view_fields_agree() -> None:
    state = SCHEMAS["ActionState"]
    assert set(state["properties"]) == set(state["required"]) == set(STATE_FIELDS)
    assert set(state["properties"]["status"]["enum"]) == set(STATUSES)
    assert set(SCHEMAS["ActionAnswer"]["properties"]["status"]["enum"]) == set(STATUSES)


@pytest.mark.parametrize(
    "body",
    [
        {"command": "ls", "action": "data_export", "target": {"environment": "prod"}, "idempotency_key": "a b"},
        {"command": "ls", "action": "nope", "target": {"environment": "prod"}, "idempotency_key": "k"},
        {
            "command": ["ls"] * (MAX_ARGV + 1),
            "action": "deploy",
            "target": {"environment": "p"},
            "idempotency_key": "k",
        },
        {"command": "ls", "action": "deploy", "target": {"environment": "p"}, "idempotency_key": "k", "x": 1},
    ],
)
def test_what_the_document_refuses_the_model_refuses(body: dict[str, Any]) -> None:
    assert list(validator("ActionRequest").iter_errors(body)) != []
    with pytest.raises(InvalidInput):
        parse_model(ActionRequest, body)

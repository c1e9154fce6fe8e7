"""`docs/openapi/events.yaml` and `GenericEventRequest` must describe the same contract."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from functions.http import problem_body
from gatekeeper.errors import InvalidInput
from gatekeeper.events.generic import GenericEventRequest, GenericEvidence, parse_generic
from gatekeeper.events.model import ActionKind, EvidenceRef

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "events.yaml"
DOC: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
DOC_URI = "urn:gatekeeper:openapi:events"
OPERATION = DOC["paths"]["/api/events"]["post"]
SCHEMAS = DOC["components"]["schemas"]


def validator(name: str) -> Draft202012Validator:
    registry = Registry().with_resource(DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=registry)


def examples() -> dict[str, Any]:
    return {
        name: ex["value"] for name, ex in OPERATION["requestBody"]["content"]["application/json"]["examples"].items()
    }


def test_document_is_openapi_3_1_with_both_auth_schemes() -> None:
    assert DOC["openapi"].startswith("3.1")
    schemes = DOC["components"]["securitySchemes"]
    assert schemes["functionKey"] == {
        **schemes["functionKey"],
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
    }
    assert schemes["entraId"]["scheme"] == "bearer"
    assert set(OPERATION["responses"]) >= {"202", "400", "401", "422"}
    assert "application/problem+json" in OPERATION["responses"]["422"]["content"]


@pytest.mark.parametrize("name", sorted(examples()))
def test_examples_are_valid_for_both_the_document_and_the_model(name: str) -> None:
    body = examples()[name]
    assert list(validator("GenericEventRequest").iter_errors(body)) == []
    event = parse_generic(body, tenant_id="contoso")
    assert event.kind.value == body["kind"]


def test_field_names_and_required_fields_agree() -> None:
    model_schema = GenericEventRequest.model_json_schema(by_alias=True)
    doc_schema = SCHEMAS["GenericEventRequest"]
    assert set(doc_schema["properties"]) == set(model_schema["properties"])
    assert set(doc_schema["required"]) == set(model_schema["required"])
    assert doc_schema["additionalProperties"] is False
    evidence_model = GenericEvidence.model_json_schema()
    assert set(SCHEMAS["GenericEvidence"]["properties"]) == set(evidence_model["properties"])
    assert set(SCHEMAS["GenericEvidence"]["properties"]) == set(EvidenceRef.model_fields)


def test_enumerations_agree() -> None:
    props = SCHEMAS["GenericEventRequest"]["properties"]
    model_fields = GenericEventRequest.model_fields
    assert set(props["kind"]["enum"]) == set(typing.get_args(model_fields["kind"].annotation))
    assert set(props["action"]["enum"]) - {None} == {a.value for a in ActionKind}
    evidence_kinds = set(typing.get_args(EvidenceRef.model_fields["kind"].annotation))
    assert set(SCHEMAS["GenericEvidence"]["properties"]["kind"]["enum"]) == evidence_kinds
    assert set(typing.get_args(GenericEvidence.model_fields["kind"].annotation)) == evidence_kinds


def test_length_limits_agree() -> None:
    model_props = GenericEventRequest.model_json_schema(by_alias=True)["properties"]
    doc_props = SCHEMAS["GenericEventRequest"]["properties"]
    for name, doc_prop in doc_props.items():
        if "maxLength" not in doc_prop:
            continue
        model_prop = model_props[name]
        variants = model_prop.get("anyOf", [model_prop])
        limits = {v.get("maxLength") for v in variants if v.get("type") == "string"}
        assert limits == {doc_prop["maxLength"]}, name


BAD_BODIES = [
    {"kind": "gate_request", "runId": "1"},
    {"kind": "deployment_status", "environment": "prod", "runId": "1"},
    {"kind": "run_status", "runId": "1"},
    {"environment": "prod", "runId": "1"},
    {"kind": "gate_request", "environment": "prod"},
    {"kind": "gate_request", "environment": "prod", "runId": "1", "surprise": True},
    {"kind": "gate_request", "environment": "prod", "runId": "1", "labels": ["has space"]},
    {"kind": "gate_request", "environment": "prod", "runId": "1", "action": "yolo"},
    {"kind": "gate_request", "environment": "prod", "runId": "1", "evidence": [{"kind": "tests"}]},
    {
        "kind": "gate_request",
        "environment": "prod",
        "runId": "1",
        "evidence": [{"kind": "tests", "uri": "u", "data": {}}],
    },
    {"kind": "gate_request", "environment": "", "runId": "1"},
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_both_refuse_the_same_bad_bodies(body: dict[str, Any]) -> None:
    assert list(validator("GenericEventRequest").iter_errors(body)), "the document accepts it"
    with pytest.raises(InvalidInput):
        parse_generic(body, tenant_id="contoso")


def test_documented_422_example_is_what_the_parser_answers() -> None:
    example = OPERATION["responses"]["422"]["content"]["application/problem+json"]["example"]
    assert list(validator("Problem").iter_errors(example)) == []
    with pytest.raises(InvalidInput) as caught:
        parse_generic({"kind": "gate_request", "runId": "1"}, tenant_id="contoso")
    assert problem_body(caught.value) == example


def test_documented_202_example_matches_its_schema() -> None:
    example = OPERATION["responses"]["202"]["content"]["application/json"]["example"]
    assert list(validator("EventAccepted").iter_errors(example)) == []
    assert list(validator("EventAccepted").iter_errors({**example, "status": "queued"}))

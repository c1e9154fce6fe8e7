"""Shared parser helpers: error translation, status vocabulary, decision words."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretStr

from functions.http import problem_body
from gatekeeper.errors import InvalidInput
from gatekeeper.events.common import (
    Ignored,
    Payload,
    action_from_text,
    decision_from_text,
    json_path,
    normalise_status,
    validate,
)
from gatekeeper.events.model import ActionKind


class _Inner(Payload):
    login: str


class _Outer(Payload):
    id: int
    users: list[_Inner]
    token: SecretStr | None = None


def test_json_path() -> None:
    assert json_path(("deployment", "creator", "login")) == "deployment.creator.login"
    assert json_path(("labels", 2)) == "labels[2]"
    assert json_path(("x", "function-after[_check(), str]"), root="payload") == "payload.x"
    assert json_path((), root="") == "$"


def test_validate_names_first_field_and_lists_all() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(_Outer, {"users": [{"login": 1}]}, context="thing", root="payload")
    problem = caught.value
    assert problem.detail == "thing: field 'payload.id' is required (and 1 more)"
    assert problem.field == "payload.id"
    assert problem.extra["errors"] == [
        {"field": "payload.id", "detail": "is required"},
        {"field": "payload.users[0].login", "detail": "should be a valid string"},
    ]


def test_validate_never_echoes_input_or_chains_pydantic_errors() -> None:
    secret = "ghs_0123456789abcdefSECRET"
    with pytest.raises(InvalidInput) as caught:
        validate(_Outer, {"id": secret, "users": [], "token": secret}, context="thing")
    assert secret not in str(problem_body(caught.value))
    assert secret not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_strict_payload_models_refuse_lookalikes() -> None:
    for bad in (True, "12", 1.0):
        with pytest.raises(InvalidInput):
            validate(_Outer, {"id": bad, "users": []}, context="thing")
    assert validate(_Outer, {"id": 12, "users": [], "ignored": "extra"}, context="thing").id == 12


def test_non_object_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(_Outer, "text", context="thing", root="payload")
    assert caught.value.field == "payload"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("succeeded", "success"),
        ("Succeeded", "success"),
        ("failed", "failure"),
        ("canceled", "cancelled"),
        ("inProgress", "in_progress"),
        ("partiallySucceeded", "partially_succeeded"),
        ("in_progress", "in_progress"),
        ("Change Approved", "change_approved"),
        ("  ", None),
        (None, None),
    ],
)
def test_normalise_status(raw: str | None, normal: str | None) -> None:
    assert normalise_status(raw) == normal


@pytest.mark.parametrize(
    ("texts", "decision"),
    [
        (("Change Approved",), True),
        (("CAB Rejected",), False),
        (("Declined by customer",), False),
        (("Pending Approval",), None),
        (("Not Approved",), None),
        (("Approved - Rejected",), None),
        ((None, "", "approved"), True),
        (("Unapproved",), None),
    ],
)
def test_decision_from_text(texts: tuple[str | None, ...], decision: bool | None) -> None:
    assert decision_from_text(*texts) is decision


def test_action_from_text() -> None:
    assert action_from_text("Change Request", "Deployment") is ActionKind.DEPLOY
    assert action_from_text(None, "Infrastructure change") is ActionKind.INFRASTRUCTURE_CHANGE
    assert action_from_text("Roll back release 2.3") is ActionKind.ROLLBACK
    assert action_from_text("Printer toner", None) is None


def test_ignored_is_a_frozen_value() -> None:
    assert Ignored("x") == Ignored("x")
    with pytest.raises(AttributeError):
        Ignored("x").reason = "y"  # type: ignore[misc]
    assert not isinstance(Ignored("x"), BaseModel)

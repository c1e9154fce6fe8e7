"""Payload list defaults come from a plain function, not `list`: pydantic reads a default factory's signature,
and a builtin's would make a new instance compile `tokenize`'s patterns on its first request (cold start).
The default itself is unchanged: a new empty list for every payload."""

from __future__ import annotations

import inspect

import pydantic
import pytest

from gatekeeper.events import azure_devops, common, generic, github, model
from gatekeeper.tenancy import model as tenancy_model

INGESTION_MODELS = [
    value
    for module in (model, common, github, azure_devops, generic, tenancy_model)
    for value in vars(module).values()
    if inspect.isclass(value) and issubclass(value, pydantic.BaseModel) and value.__module__ == module.__name__
]


def _builtin_with_text_signature(factory: object) -> bool:
    return inspect.isbuiltin(factory) or (
        isinstance(factory, type)
        and factory.__module__ == "builtins"
        and bool(getattr(factory, "__text_signature__", None))
    )


@pytest.mark.parametrize("cls", INGESTION_MODELS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_no_ingestion_model_defaults_through_a_builtin_with_a_text_signature(cls):
    factories = {name: f.default_factory for name, f in cls.model_fields.items() if f.default_factory is not None}
    assert [name for name, f in factories.items() if _builtin_with_text_signature(f)] == []


def test_the_check_above_recognises_list_and_not_dict():
    assert _builtin_with_text_signature(list) and not _builtin_with_text_signature(common.no_items)
    assert not _builtin_with_text_signature(dict)  # no text signature: pydantic gives up at once


def test_each_payload_gets_a_new_empty_list():
    field = generic.GenericEventRequest.model_fields["labels"]
    first, second = field.get_default(call_default_factory=True), field.get_default(call_default_factory=True)
    assert first == [] and second == [] and first is not second
    assert len(INGESTION_MODELS) > 10  # the parametrised check above sees the payload models

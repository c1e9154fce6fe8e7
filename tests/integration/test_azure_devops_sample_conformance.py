"""Azure DevOps's published service hook samples, and variants of them, against `azure_devops_service_hook`.

Azure DevOps publishes no JSON schema for service hooks, only the sample payloads of
docs/service-hooks/events.md (../shared/fixtures/azure-devops/, quirks listed in its README). So the
variants are derived from the samples: each as published; each cut down to the fields the parser reads (taken
from its payload models, so a field it starts reading is kept too) and to the fields it requires; with the
nulls the docs' approval samples show (`resource.pipeline`, `resource.stage`, `resource.run`); with every
optional field the parser reads null, at once and one at a time. `resourceContainers` (which tenant sent it)
is kept as published: the samples' account is registered for the test tenant.

Every delivery is posted with the tenant's Basic credential, as a subscription sends it. A variant is never
answered 422 or 500: it is accepted (202, the normalised event carrying what the payload said) or ignored
(202 with the reason).
"""

from __future__ import annotations

import base64
import copy
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest
from pydantic import BaseModel

from gatekeeper.events import azure_devops as parser
from gatekeeper.events.common import normalise_status
from gatekeeper.events.model import EventKind, PipelineEvent
from gatekeeper.ingest.queue import decode_message
from gatekeeper.services import set_services
from tests.conftest import SHARED_FIXTURES
from tests.support.gatekeeper_env import ADO_HOOK_SECRET, GatekeeperEnv, http_function, make_env

SAMPLES = SHARED_FIXTURES / "azure-devops"
# sample file -> the payload model the parser reads it with (None: an event type it answers "ignored")
READERS: dict[str, type[BaseModel] | None] = {
    "build.complete.json": parser._BuildCompleteEvent,
    "ms.vss-pipelines.run-state-changed-event.json": parser._RunStateEvent,
    "ms.vss-pipelines.stage-state-changed-event.json": parser._StageStateEvent,
    "ms.vss-pipelinechecks-events.approval-pending.json": None,
    "ms.vss-pipelinechecks-events.approval-completed.json": None,
}
IDENTITY = ("resourceContainers",)  # which tenant a notification belongs to: kept in every variant


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


@pytest.fixture(scope="module")
def env(azurite: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatekeeperEnv]:
    env = make_env(azurite.connection_string, tmp_path_factory.mktemp("keys"))
    set_services(env.services)
    yield env
    set_services(None)


# -- the fields the parser reads, from its payload models ----------------------------------------------

Shape = dict[str, tuple[bool, "Shape | None"]]  # JSON key -> (required, the shape of an object value)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The payload model inside `X | None`, `list[X]` or `Annotated[X, ...]`, if there is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def shape_of(model: type[BaseModel]) -> Shape:
    shape: Shape = {}
    for name, field in model.model_fields.items():
        inner = _model_in(field.annotation)
        shape[field.alias or name] = (field.is_required(), shape_of(inner) if inner else None)
    return shape


def envelope_and(model: type[BaseModel] | None) -> Shape:
    """The envelope's fields (every notification) merged with the event model's."""
    shape = shape_of(parser._HookEnvelope)
    if model is not None:
        shape.update(shape_of(model))
    return shape


def keep(value: Any, shape: Shape | None, *, required_only: bool) -> Any:
    """`value` with only the keys `shape` names (only the required ones, if asked); lists item by item."""
    if shape is None:
        return value
    if isinstance(value, list):
        return [keep(item, shape, required_only=required_only) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        key: keep(item, shape[key][1], required_only=required_only)
        for key, item in value.items()
        if key in shape and (shape[key][0] or not required_only)
    }


def optional_paths(value: Any, shape: Shape, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of the optional fields the parser reads that the document has (objects only, not list items)."""
    if not isinstance(value, dict):
        return
    for key, (required, inner) in shape.items():
        if key not in value:
            continue
        if not required:
            yield (*prefix, key)
        if inner is not None:
            yield from optional_paths(value[key], inner, (*prefix, key))


def set_path(document: dict[str, Any], path: tuple[str, ...], new: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return changed


# -- variants ----------------------------------------------------------------------------------------------


def variants(name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    published = sample(name)
    shape = envelope_and(READERS[name])
    identity = {key: published[key] for key in IDENTITY if key in published}
    yield "as published", published
    yield "read fields only", {**keep(published, shape, required_only=False), **identity}
    yield "required fields only", {**keep(published, shape, required_only=True), **identity}
    quirk = copy.deepcopy(published)
    quirk["resource"].update(pipeline=None, stage=None, run=None)
    yield "resource.pipeline/stage/run null (the approval samples' quirk)", quirk
    every = copy.deepcopy(published)
    paths = sorted(optional_paths(published, shape), key=len, reverse=True)  # innermost first
    for path in paths:
        every = set_path(every, path, None) if _has(every, path) else every
        yield f"{'.'.join(path)} null", set_path(published, path, None)
    yield "every optional field read null", every


def _has(document: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return False
        document = document[key]
    return True


CASES = [
    pytest.param(name, label, document, id=f"{name.removesuffix('.json')}: {label}")
    for name in READERS
    for label, document in variants(name)
]


# -- delivery and judgement ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    queued: list[PipelineEvent]


def deliver(env: GatekeeperEnv, document: dict[str, Any]) -> Answer:
    env.drain()
    credential = base64.b64encode(f"gatekeeper:{ADO_HOOK_SECRET}".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {credential}"}
    request = func.HttpRequest(
        "POST",
        "http://localhost/api/azure-devops/service-hooks",
        headers=headers,
        body=json.dumps(document).encode(),
    )
    response = http_function("azure_devops_service_hook")(request)
    queued = [decode_message(env.services.sealer, text).event for text in env.drain()]
    return Answer(response.status_code, json.loads(response.get_body()), queued)


def _get(document: Any, *path: str) -> Any:
    for key in path:
        document = document.get(key) if isinstance(document, dict) else None
    return document


def run_number(run: Any) -> int | None:
    """What the docs say identifies the run: `id`, else the last segment of `_links.self.href` or `url`."""
    if not isinstance(run, dict):
        return None
    if isinstance(run.get("id"), int):
        return int(run["id"])
    for url in (_get(run, "_links", "self", "href"), run.get("url")):
        if isinstance(url, str) and "/runs/" in url and url.rsplit("/runs/", 1)[1].rstrip("/").isdigit():
            return int(url.rsplit("/runs/", 1)[1].rstrip("/"))
    return None


@dataclass(frozen=True)
class Expected:
    kind: EventKind | None  # None: ignored
    fields: dict[str, Any]
    reason_words: tuple[str, ...] = ()


def expected(document: dict[str, Any]) -> Expected:
    """What the notification means to Gatekeeper, read from the document as the docs describe it."""
    kind = document["eventType"]
    resource = document.get("resource") or {}
    if kind == "build.complete":
        state = resource.get("result") or resource.get("status")
        if not state:
            return Expected(None, {}, ("build.complete", "neither result nor status"))
        return Expected(EventKind.RUN_STATUS, {"run_id": str(resource["id"]), "status": normalise_status(state)})
    if kind == "ms.vss-pipelines.run-state-changed-event":
        run = resource.get("run")
        number = run_number(run)
        if number is None or not isinstance(run, dict):
            return Expected(None, {}, (kind, "names no run"))
        state = run.get("result") or run.get("state")
        return Expected(EventKind.RUN_STATUS, {"run_id": str(number), "status": normalise_status(state)})
    if kind == "ms.vss-pipelines.stage-state-changed-event":
        stage, number = resource.get("stage"), run_number(resource.get("run"))
        if not isinstance(stage, dict):
            return Expected(None, {}, (kind, "names no stage"))
        if number is None:
            return Expected(None, {}, (kind, "names no run"))
        state = stage.get("result") or stage.get("state")
        fields = {"run_id": str(number), "environment": stage["name"], "status": normalise_status(state)}
        return Expected(EventKind.STAGE_STATUS, fields)
    return Expected(None, {}, (kind, "not handled"))


def judge(answer: Answer, document: dict[str, Any]) -> None:
    assert answer.status not in (422, 500), f"sample variant refused: {answer.body}"
    assert answer.status == 202, answer.body
    want = expected(document)
    if want.kind is None:
        assert answer.body["status"] == "ignored", answer.body
        assert all(word in answer.body["reason"] for word in want.reason_words), answer.body["reason"]
        assert answer.queued == []
        return
    assert answer.body["status"] == "accepted" and answer.body["kind"] == want.kind.value, answer.body
    [event] = answer.queued
    assert event.kind is want.kind
    assert {name: getattr(event, name) for name in want.fields} == want.fields
    assert event.delivery_id == document.get("id")


@pytest.mark.parametrize(("name", "label", "document"), CASES)
def test_sample_variant_is_accepted_or_ignored(env, name, label, document):
    judge(deliver(env, document), document)


@pytest.mark.parametrize("name", [name for name, model in READERS.items() if model is not None])
def test_fields_the_parser_does_not_read_change_nothing(env, name):
    """Cut down to the fields the parser reads, a sample gives the same normalised event as published."""
    published = sample(name)
    shape = envelope_and(READERS[name])
    reduced = {**keep(published, shape, required_only=False), "resourceContainers": published["resourceContainers"]}
    full, cut = deliver(env, published), deliver(env, reduced)
    assert full.status == cut.status == 202
    [before], [after] = full.queued, cut.queued
    assert after.model_dump(exclude={"received_at"}) == before.model_dump(exclude={"received_at"})

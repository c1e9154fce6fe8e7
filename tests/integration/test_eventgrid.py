"""The Event Grid adapter: the real `EventGridPublisherClient` against a local server that speaks the Event
Grid publish API for CloudEvents (devstack/eventgrid.py), and the events `gatekeeper.mesh` builds."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from devstack.eventgrid import AUDIENCE, AudienceCredential, LocalEventGridServer, cloud_event_problems
from devstack.server import StaticTokenCredential
from gatekeeper import mesh
from gatekeeper.integrations.eventgrid import EventGridPublisher, topic_endpoint, topic_name
from gatekeeper.ports import MeshEvent
from gatekeeper.services import build_services
from gatekeeper.settings import Settings

AT = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)


@pytest.fixture
def topic() -> Iterator[LocalEventGridServer]:
    server = LocalEventGridServer().start()
    try:
        yield server
    finally:
        server.stop()


def _publisher(topic: LocalEventGridServer, credential: object | None = None, **kwargs: object) -> EventGridPublisher:
    return EventGridPublisher(
        topic.endpoint,
        credential or AudienceCredential(),  # type: ignore[arg-type]
        connection_verify=topic.ca_file,
        backoff=0.01,
        **kwargs,  # type: ignore[arg-type]
    )


def _decided(gate_id: str = "gate-1") -> MeshEvent:
    return mesh.build(
        "gate.decided",
        "gk-prod",
        gate_id,
        AT,
        tenant_id="contoso",
        gate_id=gate_id,
        level="L2",
        status="approved",
        decided_by="approvers",
        approval_url=f"https://gk.example/api/approvals/{gate_id}/page",
    )


def test_a_batch_goes_out_as_cloudevents_with_a_token_for_event_grid(topic: LocalEventGridServer) -> None:
    credential = AudienceCredential()
    result = _publisher(topic, credential).publish("contoso", (_decided("g1"), _decided("g2")))

    assert result.ok and result.published == 2
    (request,) = topic.requests_to("/api/events")
    assert request.query["api-version"] == ["2018-01-01"]
    assert request.headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert credential.scopes_requested == [(f"{AUDIENCE}/.default",)]
    first = request.json[0]
    assert first["specversion"] == "1.0"
    assert first["type"] == "com.gatekeeper.gate.decided"
    assert first["source"] == "/gatekeeper/gk-prod/tenants/contoso"
    assert first["subject"] == "g1"
    assert first["datacontenttype"] == "application/json"
    assert first["tenantid"] == "contoso"
    assert first["time"].startswith("2026-12-05T02:30:00")
    assert first["data"] == {
        "tenant_id": "contoso",
        "gate_id": "g1",
        "level": "L2",
        "status": "approved",
        "decided_by": "approvers",
        "approval_url": "https://gk.example/api/approvals/g1/page",
    }
    assert [cloud_event_problems(e) for e in request.json] == [[], []]


def test_the_same_fact_has_the_same_id_and_another_fact_another() -> None:
    assert _decided("g1").id == _decided("g1").id
    assert _decided("g1").id != _decided("g2").id
    requested = mesh.build(
        "gate.requested",
        "gk-prod",
        "g1",
        AT,
        tenant_id="contoso",
        gate_id="g1",
        level="L2",
        blocked=False,
        status="awaiting_approval",
    )
    assert requested.id != _decided("g1").id


def test_an_outage_is_retried_within_the_bound_then_succeeds(topic: LocalEventGridServer) -> None:
    topic.fail_next(2, 503, path_contains="/api/events")

    result = _publisher(topic, attempts=3).publish("contoso", (_decided(),))

    assert result.ok
    assert [r.status for r in topic.requests_to("/api/events")] == [503, 503, 200]
    assert len(topic.of_type("com.gatekeeper.gate.decided")) == 1


def test_a_lasting_outage_is_a_result_not_an_exception(topic: LocalEventGridServer) -> None:
    topic.fail_next(10, 503, path_contains="/api/events")

    result = _publisher(topic, attempts=3).publish("contoso", (_decided(),))

    assert not result.ok and result.status_code == 503
    assert len(topic.requests_to("/api/events")) == 3
    assert topic.events == []


def test_a_token_for_another_audience_is_refused_and_never_shown(topic: LocalEventGridServer) -> None:
    result = _publisher(topic, StaticTokenCredential("secret-token-for-graph")).publish("contoso", (_decided(),))

    assert not result.ok and result.status_code == 401
    assert "secret-token" not in result.detail


def test_an_unreachable_topic_is_a_result(topic: LocalEventGridServer) -> None:
    endpoint = topic.endpoint
    topic.stop()
    publisher = EventGridPublisher(endpoint, AudienceCredential(), attempts=1, timeout_seconds=1)  # type: ignore[arg-type]

    result = publisher.publish("contoso", (_decided(),))

    assert not result.ok and result.status_code is None and "unreachable" in result.detail


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"id": "1", "source": "/s", "type": "t"}, "specversion: required"),
        ({"specversion": "1.0", "source": "/s", "type": "t"}, "id: required"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "tenantId": "x"}, "tenantId"),
        ({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "time": "yesterday"}, "time"),
    ],
)
def test_the_local_topic_refuses_what_cloudevents_forbids(
    topic: LocalEventGridServer, event: dict[str, str], problem: str
) -> None:
    """The server is strict where the service and the spec are, so a test against it can fail."""
    import requests

    answer = requests.post(
        f"{topic.endpoint}?api-version=2018-01-01",
        json=[event],
        headers={
            "Authorization": f"Bearer local:{AUDIENCE}",
            "Content-Type": "application/cloudevents-batch+json; charset=utf-8",
        },
        verify=topic.ca_file,
        timeout=5,
    )
    assert answer.status_code == 400 and problem in answer.json()["error"]["message"]


def test_extension_names_outside_the_spec_are_refused_when_built() -> None:
    with pytest.raises(ValueError, match="extension names"):
        MeshEvent.model_validate({**_decided().model_dump(), "extensions": {"TenantId": "x"}})
    with pytest.raises(ValueError, match="extension names"):
        MeshEvent.model_validate({**_decided().model_dump(), "extensions": {"gatekeepertenantidentifier": "x"}})


def test_data_outside_the_allow_list_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="title"):
        mesh.build(
            "gate.completed",
            "gk",
            "g1",
            AT,
            tenant_id="t",
            gate_id="g1",
            level="L1",
            status="approved",
            callback_ok=True,
            title="Deploy secret project",
        )


def test_settings_choose_the_publisher_and_the_source_name() -> None:
    off = build_services(Settings.from_environ({}), credential=AudienceCredential())  # type: ignore[arg-type]
    assert off.events.publish("t", (_decided(),)).skipped
    on = build_services(
        Settings.from_environ(
            {
                "GATEKEEPER_EVENTGRID_TOPIC_ENDPOINT": "https://gk-prod-events.westeurope-1.eventgrid.azure.net/api/events"
            }
        ),
        credential=AudienceCredential(),  # type: ignore[arg-type]
    )
    assert isinstance(on.events, EventGridPublisher)
    assert on.mesh_deployment == "gk-prod-events"
    assert topic_endpoint("https://x.eventgrid.azure.net") == "https://x.eventgrid.azure.net/api/events"
    assert topic_name("https://gk-prod-events.westeurope-1.eventgrid.azure.net/api/events") == "gk-prod-events"

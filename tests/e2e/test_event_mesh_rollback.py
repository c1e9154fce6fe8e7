"""Watch and rollback facts on the event mesh: a deployment that goes bad after a good one is rolled back
through GitHub, and the mesh hears `deployment.watched` for both and `rollback.dispatched`/`finished` once,
through the real `EventGridPublisherClient` against the local Event Grid topic."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.eventgrid import AudienceCredential, LocalEventGridServer, cloud_event_problems
from gatekeeper.integrations.eventgrid import EventGridPublisher
from tests.e2e.test_rollback_flows import Env, app_key, env, shared  # noqa: F401  (fixtures)

pytestmark = pytest.mark.azurite


@pytest.fixture
def topic(env: Env) -> Iterator[LocalEventGridServer]:
    server = LocalEventGridServer().start()
    env.gates.services.events = EventGridPublisher(  # type: ignore[misc]
        server.endpoint, AudienceCredential(), connection_verify=server.ca_file, backoff=0.01
    )
    try:
        yield server
    finally:
        server.stop()


def test_a_rollback_publishes_the_watch_and_rollback_facts(env: Env, topic: LocalEventGridServer) -> None:
    good, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rolled_back"

    by_subject = {
        subject: [e["type"].removeprefix("com.gatekeeper.") for e in topic.events if e["subject"] == subject]
        for subject in (good, bad)
    }
    assert by_subject == {
        good: ["deployment.watched"],
        bad: ["rollback.dispatched", "rollback.finished", "deployment.watched"],
    }
    events = {e["type"].removeprefix("com.gatekeeper."): e for e in topic.events if e["subject"] == bad}
    dispatched = events["rollback.dispatched"]["data"]
    assert dispatched["ok"] is True and dispatched["level"] == "L1" and dispatched["target"] == "github"
    assert dispatched["watch_id"] == bad and dispatched["tenant_id"] == env.tenant_id
    assert events["rollback.finished"]["data"]["conclusion"] == "success"
    watched = events["deployment.watched"]["data"]
    assert watched["gate_id"].startswith("gate-")  # the deployment's own gate, by id
    assert watched == {
        "tenant_id": env.tenant_id,
        "watch_id": bad,
        "gate_id": watched["gate_id"],
        "outcome": "rolled_back",
        "is_rollback": False,
    }
    healthy = next(e for e in topic.events if e["subject"] == good)["data"]
    assert healthy["outcome"] == "healthy"
    assert all(cloud_event_problems(e) == [] for e in topic.events)
    text = str(topic.events)
    assert "webshop" not in text and "refs/tags" not in text and "badbad" not in text  # no repository, ref, commit


def test_a_failing_rollback_is_escalated_on_the_mesh(env: Env, topic: LocalEventGridServer) -> None:
    env.github.dispatch_conclusion = "failure"
    _, bad, _ = env.good_then_bad()
    assert env.finish(bad)["outcome"] == "rollback_failed"
    kinds = [e["type"].removeprefix("com.gatekeeper.") for e in topic.events if e["subject"] == bad]
    assert kinds == ["rollback.dispatched", "rollback.finished", "rollback.escalated", "deployment.watched"]
    escalated = next(e for e in topic.events if e["type"] == "com.gatekeeper.rollback.escalated")
    assert escalated["data"]["level"] == "L3"

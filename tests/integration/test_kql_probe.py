"""The KQL probe: the real `azure-monitor-query` LogsQueryClient against a local server speaking the Log
Analytics query API over TLS (`POST /v1/workspaces/{id}/query`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devstack.log_analytics import LocalLogAnalyticsServer
from devstack.server import StaticTokenCredential
from gatekeeper.policy.watch import KqlProbeSpec
from gatekeeper.rollback.kql import KqlProbe
from gatekeeper.rollback.probes import HttpHealthProbe, Probes

WORKSPACE = "a0a0a0a0-bbbb-cccc-dddd-e1e1e1e1e1e1"
OTHER = "b1b1b1b1-cccc-dddd-eeee-f2f2f2f2f2f2"
DEPLOYED = datetime(2031, 3, 3, 10, 0, tzinfo=UTC)
QUERY = "requests | summarize value = countif(success == false) * 1.0 / count()"


@pytest.fixture
def server() -> Iterator[LocalLogAnalyticsServer]:
    with LocalLogAnalyticsServer({WORKSPACE, OTHER}) as local:
        yield local


def probe_for(server: LocalLogAnalyticsServer, allowed: set[str] = frozenset({WORKSPACE})) -> KqlProbe:
    return KqlProbe(
        server.credential,
        server.endpoint,
        lambda tenant, workspace: tenant == "tenant1" and workspace in allowed,
        **server.client_kwargs(),
    )


def spec(**over) -> KqlProbeSpec:
    return KqlProbeSpec.model_validate(
        {"type": "kql", "name": "failed requests", "workspace_id": WORKSPACE, "query": QUERY, "threshold": 0.05} | over
    )


def test_a_value_under_the_threshold_passes_and_the_query_is_sent_as_documented(server):
    server.current = 0.01
    result = probe_for(server).run(spec(timespan="PT10M"), "tenant1", DEPLOYED)
    assert result.outcome == "pass" and result.detail == "0.01"
    (sent,) = server.queries
    assert sent == {"workspace": WORKSPACE, "query": QUERY, "timespan": "PT600.0S"}  # the SDK's ISO 8601 form
    (request,) = server.requests_to("/v1/workspaces/")
    assert request.headers["authorization"] == f"Bearer {server.token}"


def test_a_value_past_the_threshold_fails_naming_it(server):
    server.current = 0.2
    result = probe_for(server).run(spec(), "tenant1", DEPLOYED)
    assert result.outcome == "fail" and result.detail == "0.2 > 0.05"
    below = probe_for(server).run(spec(operator="<", threshold=0.5), "tenant1", DEPLOYED)
    assert below.outcome == "fail" and below.detail == "0.2 < 0.5"


def test_the_baseline_is_the_same_query_over_the_span_before_the_deployment(server):
    server.current, server.baseline = 300.0, 180.0
    loose = probe_for(server).run(spec(threshold=None, max_increase_percent=100, timespan="PT15M"), "tenant1", DEPLOYED)
    assert loose.outcome == "pass" and loose.detail == "300 (baseline 180)"
    baseline_span = server.queries[1]["timespan"]
    start, end = (datetime.fromisoformat(p.replace("Z", "+00:00")) for p in baseline_span.split("/"))
    assert (start, end) == (DEPLOYED - timedelta(minutes=15), DEPLOYED)
    strict = probe_for(server).run(spec(threshold=None, max_increase_percent=50), "tenant1", DEPLOYED)
    assert strict.outcome == "fail" and "more than 50% above the baseline 180" in strict.detail


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        (lambda s: setattr(s, "current", None), "no rows"),
        (lambda s: setattr(s, "partial", True), "partially"),
        (lambda s: s.fail_next(1, 500), "query failed"),
    ],
)
def test_a_query_that_cannot_be_evaluated_is_an_error_never_a_pass(server, setup, words):
    setup(server)
    result = probe_for(server).run(spec(), "tenant1", DEPLOYED)
    assert result.outcome == "error" and words in result.detail


def test_a_refused_token_is_an_error(server):
    probe = KqlProbe(
        lambda: StaticTokenCredential("not-the-token"), server.endpoint, lambda _t, _w: True, **server.client_kwargs()
    )
    result = probe.run(spec(), "tenant1", DEPLOYED)
    assert result.outcome == "error" and "401" in result.detail and "not-the-token" not in result.detail


def test_only_the_tenants_own_workspaces_are_queried(server):
    result = probe_for(server).run(spec(workspace_id=OTHER), "tenant1", DEPLOYED)
    assert result.outcome == "error" and "not registered for the tenant" in result.detail
    assert probe_for(server).run(spec(), "tenant2", DEPLOYED).outcome == "error"
    assert server.queries == []  # nothing was sent


def test_the_probe_table_runs_kql_only_when_configured(server):
    server.current = 0.2
    assert Probes(HttpHealthProbe(), probe_for(server)).run(spec(), "tenant1", DEPLOYED).outcome == "fail"
    missing = Probes(HttpHealthProbe()).run(spec(), "tenant1", DEPLOYED)
    assert missing.outcome == "error" and "not configured" in missing.detail

"""The configured path end to end: a fresh process with APPLICATIONINSIGHTS_CONNECTION_STRING set configures
Azure Monitor's OpenTelemetry distro through the composition root (`gatekeeper.services.azure_monitor`) on its
first event, with the process credential, and the real exporter delivers custom events and metrics to a local
ingestion endpoint (devstack/appinsights.py) with an Entra bearer token. Loopback only: statsbeat and the
exporter's control plane are off and every other host goes to a dead proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.appinsights import AUDIENCE, LocalAppInsightsServer

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from devstack.eventgrid import AudienceCredential
    import function_app  # registers the composition root's exporter factory, as the host does
    from gatekeeper import telemetry
    from gatekeeper.services import build_services, set_services
    from gatekeeper.settings import Settings

    credential = AudienceCredential()  # stands in for the managed identity
    set_services(build_services(Settings.from_environ(), credential=credential))
    telemetry.emit("GateDecision", tenant="contoso", instance_id="gate-7", level="L2", rule="prod-deploy",
                   source="github", environment="production", action="deploy", blocked=False, quality="warning",
                   quality_score=87.5, approval_stages=1, commit_time="2026-12-01T08:15:00+00:00",
                   commit_age_seconds=5400.0)
    telemetry.emit("CallbackFailed", tenant="contoso", instance_id="gate-7", target=None, status_code=502,
                   final=True)
    telemetry.measure("gatekeeper.queue.age", 12.5, queue="pipeline-events")
    sink = telemetry.active_sink()
    from opentelemetry import _logs, metrics
    assert _logs.get_logger_provider().force_flush(10_000)
    assert metrics.get_meter_provider().force_flush(10_000)
    scopes = sorted({s for c in credential.scopes_requested for s in c})
    print(json.dumps({"sink": type(sink).__name__, "scopes": scopes}))
    """
)


@pytest.fixture
def ingestion() -> Iterator[LocalAppInsightsServer]:
    with LocalAppInsightsServer() as server:
        yield server


def run_child(server: LocalAppInsightsServer, connection_string: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "GATEKEEPER_"))}
    environment.update(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": connection_string,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "REQUESTS_CA_BUNDLE": server.ca_file,
            "HTTPS_PROXY": "http://127.0.0.1:9",  # anything not on loopback goes nowhere
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_app_service",  # no VM metadata probe
            "GATEKEEPER_KEY_MODE": "local",
            "GATEKEEPER_NOTIFY_MODE": "outbox",
        }
    )
    return subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def test_the_configured_process_exports_custom_events_and_metrics_with_an_entra_token(
    ingestion: LocalAppInsightsServer,
):
    result = run_child(ingestion, ingestion.connection_string)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["sink"] == "OtelSink"
    assert report["scopes"] == [f"{AUDIENCE}/.default"], "the credential is asked for the monitor audience only"
    tracks = ingestion.requests_to("/track", "POST")
    assert tracks and all(r.status == 200 for r in tracks)
    assert all(r.headers.get("authorization") == f"Bearer local:{AUDIENCE}" for r in tracks)

    (decision,) = ingestion.custom_events("GateDecision")
    assert decision["properties"]["tenant"] == "contoso" and decision["properties"]["level"] == "L2"
    assert decision["properties"]["rule"] == "prod-deploy" and decision["properties"]["blocked"] == "False"
    assert decision["measurements"] == {"approval_stages": 1.0, "quality_score": 87.5, "commit_age_seconds": 5400.0}
    assert decision["properties"]["commit_time"] == "2026-12-01T08:15:00+00:00"
    (failed,) = ingestion.custom_events("CallbackFailed")
    assert "target" not in failed["properties"] and failed["properties"]["final"] == "True"

    (gates,) = ingestion.metrics("gatekeeper.gates")
    assert gates["value"] == 1 and gates["properties"]["level"] == "L2" and gates["properties"]["tenant"] == "contoso"
    (age,) = ingestion.metrics("gatekeeper.queue.age")
    assert age["value"] == 12.5 and age["count"] == 1 and age["properties"] == {"queue": "pipeline-events"}
    assert ingestion.metrics("gatekeeper.callback.failures")[0]["properties"]["final"] == "True"
    # one copy: the events went to the exporter, not also up to the host's trace log (stderr here)
    assert "GATEKEEPER_EVENT" not in result.stderr


def test_telemetry_with_only_the_instrumentation_key_is_refused(ingestion: LocalAppInsightsServer):
    """The local endpoint refuses what the real component (local auth disabled) refuses: no bearer token."""
    import requests

    response = requests.post(
        f"https://127.0.0.1:{ingestion.port}/v2.1/track", json=[], verify=ingestion.ca_file, timeout=10
    )
    assert response.status_code == 401


DEPENDENCY_CHILD = textwrap.dedent(
    """
    import json, logging, sys
    import requests
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    from devstack.eventgrid import AudienceCredential
    from devstack.webhook import LocalWebhookReceiver
    import function_app
    from gatekeeper import telemetry
    from gatekeeper.services import build_services, set_services
    from gatekeeper.settings import Settings

    set_services(build_services(Settings.from_environ(), credential=AudienceCredential()))
    telemetry.measure("gatekeeper.queue.age", 1.0, queue="pipeline-events")  # configures the exporter
    with LocalWebhookReceiver("s") as receiver:  # a callback URL whose query carries a key, as ours may
        requests.post(receiver.url + "/hook?code=" + sys.argv[1] + "&x=1", json={}, timeout=5)
        requests.get(receiver.url + "/zoneInformation?user=" + sys.argv[1], timeout=5)
    from opentelemetry import trace
    assert trace.get_tracer_provider().force_flush(10_000)
    print("flushed")
    """
)


def test_dependency_telemetry_never_carries_a_query_string(ingestion: LocalAppInsightsServer):
    """The HTTP clients are instrumented, so every outbound call becomes a dependency with its URL; a callback
    URL's query may carry a key (`?code=`, as the log filter in gatekeeper.integrations.urls knows) and
    Autotask's zone discovery names the API user. Only the URL without its query reaches telemetry."""
    secret = "query-secret-" + os.urandom(8).hex()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS", "GATEKEEPER_"))}
    environment.update(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "REQUESTS_CA_BUNDLE": ingestion.ca_file,
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_app_service",
            # the distro's default rate-limited sampler starts with no budget and drops the first spans of a
            # fresh process at random; this test is about what a kept span carries, so every span is kept
            "OTEL_TRACES_SAMPLER": "always_on",
            "GATEKEEPER_KEY_MODE": "local",
            "GATEKEEPER_NOTIFY_MODE": "outbox",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", DEPENDENCY_CHILD, secret],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "flushed" in result.stdout, result.stderr[-3000:]
    dependencies = [
        e["data"]["baseData"] for e in ingestion.envelopes if e["data"].get("baseType") == "RemoteDependencyData"
    ]
    paths = " ".join(str(d.get("data")) + " " + str(d.get("name")) for d in dependencies)
    assert "/hook" in paths and "/zoneInformation" in paths  # both calls are traced
    assert secret not in json.dumps(ingestion.envelopes)

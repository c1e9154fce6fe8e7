"""The Functions entry point: one Durable Functions app that registers every blueprint. No logic here.

Triggers and activities get their services through `gatekeeper.services.get_services()`, which builds the
one `Services` object from app settings on first use, so indexing the app imports none of the product's
heavy code (cold start). Telemetry's exporter is configured the same way: once, by the composition root, on
the first event (`gatekeeper.services.azure_monitor`; only with APPLICATIONINSIGHTS_CONNECTION_STRING set).

The objects built so far (the Functions SDKs, the worker, the blueprints) live as long as the process. They
are frozen out of the cyclic garbage collector at the end, so the collections that the first request's
imports set off scan only what those imports build, not this whole heap again; cycles that were already
garbage stay in memory once (docs/cold-start.md). The first request does the same for what it builds
(`gatekeeper.warmup`).
"""

import gc

import azure.durable_functions as df

from functions.actions import bp as actions_bp
from functions.alerts import bp as alerts_bp
from functions.approval_page import bp as approval_page_bp
from functions.approvals import bp as approvals_bp
from functions.audit import bp as audit_bp
from functions.connectors import bp as connectors_bp
from functions.deployments import bp as deployments_bp
from functions.health import bp as health_bp
from functions.ingest import bp as ingest_bp
from functions.mcp import bp as mcp_bp
from functions.messages import bp as messages_bp
from functions.queues import bp as queues_bp
from functions.recommend import bp as recommend_bp
from functions.retention import bp as retention_bp
from functions.slack import bp as slack_bp
from gatekeeper import telemetry
from gatekeeper.telemetry import Sink
from orchestrators import bp as orchestrators_bp


def _azure_monitor() -> Sink | None:
    from gatekeeper.services import azure_monitor

    return azure_monitor()


telemetry.enable(_azure_monitor)

app = df.DFApp()
BLUEPRINTS = (
    ingest_bp,
    connectors_bp,
    queues_bp,
    approvals_bp,
    approval_page_bp,
    actions_bp,
    mcp_bp,
    audit_bp,
    messages_bp,
    slack_bp,
    deployments_bp,
    alerts_bp,
    retention_bp,
    health_bp,
    recommend_bp,
    orchestrators_bp,
)
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)

gc.freeze()

"""The Functions entry point: one Durable Functions app that registers every blueprint. No logic here.

Triggers and activities get their services through `gatekeeper.services.get_services()`, which builds the
one `Services` object from app settings on first use, so indexing the app imports none of the product's
heavy code (cold start).
"""

import azure.durable_functions as df

from functions.actions import bp as actions_bp
from functions.alerts import bp as alerts_bp
from functions.approval_page import bp as approval_page_bp
from functions.approvals import bp as approvals_bp
from functions.audit import bp as audit_bp
from functions.connectors import bp as connectors_bp
from functions.deployments import bp as deployments_bp
from functions.ingest import bp as ingest_bp
from functions.messages import bp as messages_bp
from functions.queues import bp as queues_bp
from functions.retention import bp as retention_bp
from functions.slack import bp as slack_bp
from orchestrators import bp as orchestrators_bp

app = df.DFApp()
BLUEPRINTS = (
    ingest_bp,
    connectors_bp,
    queues_bp,
    approvals_bp,
    approval_page_bp,
    actions_bp,
    audit_bp,
    messages_bp,
    slack_bp,
    deployments_bp,
    alerts_bp,
    retention_bp,
    orchestrators_bp,
)
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)

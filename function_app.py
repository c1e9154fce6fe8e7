"""The Functions entry point: one Durable Functions app that registers every blueprint. No logic here.

Triggers and activities get their services through `gatekeeper.services.get_services()`, which builds the
one `Services` object from app settings on first use, so indexing the app imports none of the product's
heavy code (cold start).
"""

import azure.durable_functions as df

from functions.actions import bp as actions_bp
from functions.approvals import bp as approvals_bp
from functions.audit import bp as audit_bp
from functions.ingest import bp as ingest_bp
from functions.queues import bp as queues_bp
from orchestrators import bp as orchestrators_bp

app = df.DFApp()
for blueprint in (ingest_bp, queues_bp, approvals_bp, audit_bp, orchestrators_bp, actions_bp):
    app.register_functions(blueprint)

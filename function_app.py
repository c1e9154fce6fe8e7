"""Composition root: one Durable Functions app that registers every blueprint. No logic here."""

import azure.durable_functions as df

from functions.ingest import bp as ingest_bp
from functions.queues import bp as queues_bp

app = df.DFApp()
for blueprint in (ingest_bp, queues_bp):
    app.register_functions(blueprint)

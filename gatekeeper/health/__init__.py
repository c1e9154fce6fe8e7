"""`GET /api/health`: per-dependency status (storage tables and queues, Key Vault, the Durable task hub),
the deployment's data boundary and the first-tenant bootstrap, within a bounded time.

`report.py` runs the probes (each behind the `DependencyProbe` port in gatekeeper.ports) concurrently under one
deadline and builds the answer; `probes.py` holds the adapters. Nothing here names a tenant, a secret or an
exception's text: a failing dependency is reported by a fixed reason (timeout, unreachable, refused, missing,
error) and logged with its exception type only.
"""

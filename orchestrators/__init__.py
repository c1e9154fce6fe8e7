"""The Durable flows: one module per flow, orchestrators and activities decorated where they are defined
on one blueprint (`orchestrators.blueprint.bp`). Importing the package registers them all; the
composition root does `app.register_functions(orchestrators.bp)` and the local runner discovers the same
registrations from `bp`, so there is no second list of names.
"""

from __future__ import annotations

from orchestrators import (  # noqa: F401  (registers the flows)
    approval_chain,
    deployment_gate,
    gate_activities,
    post_deploy_watch,
    psa_activities,
)
from orchestrators.blueprint import bp

__all__ = ["bp"]

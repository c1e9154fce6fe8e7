"""The Durable flows: one module per flow, orchestrators and activities decorated where they are defined
on one blueprint (`orchestrators.blueprint.bp`). Importing the package registers them all; the
composition root does `app.register_functions(orchestrators.bp)` and the local runner discovers the same
registrations from `bp`, so there is no second list of names.
"""

from __future__ import annotations

from typing import Any

from orchestrators import approval_chain, deployment_gate, gate_activities  # noqa: F401  (registers the flows)
from orchestrators.blueprint import bp

__all__ = ["bp", "local_runner"]


def local_runner(clock: Any = None) -> Any:
    """A LocalOrchestrationRunner over every orchestrator and activity registered on `bp` (tests, demo)."""
    from gatekeeper.local.runner import LocalOrchestrationRunner

    return LocalOrchestrationRunner.from_blueprint(bp, clock)

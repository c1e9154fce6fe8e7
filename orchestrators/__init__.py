"""Orchestrators and activities of the gate, registered on one Durable Functions blueprint.

The functions stay plain (importable and callable by the local runner); this module registers them for
the real host. The composition root does `app.register_functions(orchestrators.bp)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.durable_functions as df

from orchestrators import activities, names
from orchestrators.approval_chain import approval_chain
from orchestrators.deployment_gate import deployment_gate

ORCHESTRATORS: dict[str, Callable[..., Any]] = {
    names.DEPLOYMENT_GATE: deployment_gate,
    names.APPROVAL_CHAIN: approval_chain,
}

ACTIVITIES: dict[str, Callable[[Any], Any]] = {
    names.EVALUATE: activities.gate_evaluate,
    names.REQUEST_APPROVAL: activities.gate_request_approval,
    names.NOTIFY: activities.gate_notify,
    names.CALLBACK: activities.gate_callback,
    names.OPEN_HUMAN_TASK: activities.gate_open_human_task,
    names.RECORD_OUTCOME: activities.gate_record_outcome,
    names.AUDIT: activities.gate_audit,
}

bp = df.Blueprint()
for _name, _fn in ORCHESTRATORS.items():
    bp.orchestration_trigger(context_name="context", orchestration=_name)(_fn)
for _name, _fn in ACTIVITIES.items():
    bp.activity_trigger(input_name="payload", activity=_name)(_fn)

"""The gate flow's activities, decorated where they are defined and called by reference from the flows.

Each is a thin trigger: validate the typed input (`gatekeeper.contracts.gate`), run the step in
`gatekeeper.gates.<step>` with the process's `Services`, return the typed output as JSON. Every step
with effects runs through `once` (`gatekeeper.gates.once`): the host runs activities at least once, their
effects (audit entries above all) happen once; `gate_update_messages` only refreshes messages. The product code
lives in `gatekeeper/`, which never imports `azure.functions`; the decorators need the blueprint, so the
triggers live here. Step and contract modules are imported on the first call, not when the host indexes
the app (cold start).
"""

from __future__ import annotations

from typing import Any

from orchestrators.blueprint import bp, once


def _services() -> Any:
    from gatekeeper.services import get_services

    return get_services()


@bp.activity_trigger(input_name="payload")
def gate_evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import EvaluateInput
    from gatekeeper.gates.evaluate import evaluate

    request = EvaluateInput.model_validate(payload)
    return once("gate_evaluate", request, request.instance_id, lambda s: evaluate(s, request))


@bp.activity_trigger(input_name="payload")
def gate_request_approval(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import ApprovalRequest
    from gatekeeper.gates.approval import request_approval

    request = ApprovalRequest.model_validate(payload)
    return once(
        "gate_request_approval",
        request,
        request.gate_id,
        lambda s: request_approval(s, request),
    )


@bp.activity_trigger(input_name="payload")
def gate_open_human_task(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import HumanTaskInput
    from gatekeeper.gates.approval import open_human_task

    request = HumanTaskInput.model_validate(payload)
    return once(
        "gate_open_human_task",
        request,
        request.instance_id,
        lambda s: open_human_task(s, request),
    )


@bp.activity_trigger(input_name="payload")
def gate_callback(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import CallbackInput
    from gatekeeper.gates.callback import callback

    request = CallbackInput.model_validate(payload)
    return once("gate_callback", request, request.instance_id, lambda s: callback(s, request))


@bp.activity_trigger(input_name="payload")
def gate_notify(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import NotifyInput
    from gatekeeper.gates.outcome import notify

    request = NotifyInput.model_validate(payload)
    return once("gate_notify", request, request.instance_id, lambda s: notify(s, request))


@bp.activity_trigger(input_name="payload")
def gate_record_outcome(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import OutcomeInput
    from gatekeeper.gates.outcome import record_outcome

    request = OutcomeInput.model_validate(payload)
    return once(
        "gate_record_outcome",
        request,
        request.instance_id,
        lambda s: record_outcome(s, request),
    )


@bp.activity_trigger(input_name="payload")
def gate_audit(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import AuditInput
    from gatekeeper.gates.outcome import audit

    request = AuditInput.model_validate(payload)
    return once("gate_audit", request, request.instance_id, lambda s: audit(s, request))


@bp.activity_trigger(input_name="payload")
def gate_update_messages(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import UpdateMessagesInput
    from gatekeeper.gates.outcome import update_live_messages

    return update_live_messages(_services(), UpdateMessagesInput.model_validate(payload)).model_dump(mode="json")

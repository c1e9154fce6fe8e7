"""The gate flow's activities, decorated where they are defined and called by reference from the flows.

Each is a thin trigger: validate the typed input (`gatekeeper.contracts.gate`), run the step in
`gatekeeper.gates.<step>` with the process's `Services`, return the typed output as JSON. The product code
lives in `gatekeeper/`, which never imports `azure.functions`; the decorators need the blueprint, so the
triggers live here. Step and contract modules are imported on the first call, not when the host indexes
the app (cold start).
"""

from __future__ import annotations

from typing import Any

from orchestrators.blueprint import bp


def _services() -> Any:
    from gatekeeper.services import get_services

    return get_services()


@bp.activity_trigger(input_name="payload")
def gate_evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import EvaluateInput
    from gatekeeper.gates.evaluate import evaluate

    return evaluate(_services(), EvaluateInput.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def gate_request_approval(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import ApprovalRequest
    from gatekeeper.gates.approval import request_approval

    return request_approval(_services(), ApprovalRequest.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def gate_open_human_task(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import HumanTaskInput
    from gatekeeper.gates.approval import open_human_task

    return open_human_task(_services(), HumanTaskInput.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def gate_callback(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import CallbackInput
    from gatekeeper.gates.callback import callback

    return callback(_services(), CallbackInput.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def gate_notify(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import NotifyInput
    from gatekeeper.gates.outcome import notify

    return notify(_services(), NotifyInput.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def gate_record_outcome(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import OutcomeInput
    from gatekeeper.gates.outcome import record_outcome

    return record_outcome(_services(), OutcomeInput.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def gate_audit(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import AuditInput
    from gatekeeper.gates.outcome import audit

    return audit(_services(), AuditInput.model_validate(payload)).model_dump(mode="json")


@bp.activity_trigger(input_name="payload")
def gate_update_messages(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.gate import UpdateMessagesInput
    from gatekeeper.gates.outcome import update_live_messages

    return update_live_messages(_services(), UpdateMessagesInput.model_validate(payload)).model_dump(mode="json")

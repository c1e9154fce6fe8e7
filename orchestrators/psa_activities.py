"""The PSA write-back activity (issue 15), decorated where it is defined and called by reference from the
gate and watch flows once the pipeline has its answer (or, for a request note, alongside the approval
chain), so a PSA outage never holds a gate. A thin trigger: validate the contract, run the step.

`psa_follow_up` carries one write that happens after the gate's own flow has ended: the time a person spent
on an L3 task, logged when they mark it done (started by `gatekeeper.gates.followup`, instance id
`follow_up_instance_id`), so the channel's trigger (Teams, Slack) never calls a vendor itself."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from orchestrators.blueprint import bp, call, once


@bp.activity_trigger(input_name="payload")
def psa_ticket(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.psa import PsaTicketInput
    from gatekeeper.gates.tickets import write

    request = PsaTicketInput.model_validate(payload)
    return once("psa_ticket", request, request.instance_id, lambda s: write(s, request))


@bp.orchestration_trigger(context_name="context")
def psa_follow_up(context: Any) -> Generator[Any, Any, dict[str, Any]]:
    """One `psa_ticket` write for a task marked done (moment "done"); its outcome is the result. A failure is
    the activity's own audit entry (a PSA refusal) or the instance's failure (storage), never anyone's wait."""
    from gatekeeper.contracts.psa import PsaTicketInput, PsaTicketOutcome

    request = PsaTicketInput.model_validate(context.get_input())
    outcome = yield call(context, psa_ticket, request)
    return PsaTicketOutcome.model_validate(outcome).to_json()

"""The PSA write-back activity (issue 15), decorated where it is defined and called by reference from the
gate and watch flows once the pipeline has its answer (or, for a request note, alongside the approval
chain), so a PSA outage never holds a gate. A thin trigger: validate the contract, run the step."""

from __future__ import annotations

from typing import Any

from orchestrators.blueprint import bp


@bp.activity_trigger(input_name="payload")
def psa_ticket(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.contracts.psa import PsaTicketInput
    from gatekeeper.gates.tickets import write
    from gatekeeper.services import get_services

    return write(get_services(), PsaTicketInput.model_validate(payload)).to_json()

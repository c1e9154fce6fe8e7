"""Activity functions: thin bindings from the Functions activity trigger to `gatekeeper.gates.activities`,
with the services from the registry (`gatekeeper.gates.services`). Plain functions; `orchestrators/__init__`
registers them on the blueprint under the names in `names.py`.

The gate code is imported on the first activity call, not when the host indexes the app (cold start)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gatekeeper.gates.services import GateServices


def _services() -> GateServices:
    from gatekeeper.gates import services

    return services.get()


def gate_evaluate(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.gates.activities import evaluate

    return evaluate(_services(), payload)


def gate_request_approval(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.gates.activities import request_approval

    return request_approval(_services(), payload)


def gate_notify(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.gates.activities import notify

    return notify(_services(), payload)


def gate_callback(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.gates.activities import callback

    return callback(_services(), payload)


def gate_open_human_task(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.gates.activities import open_human_task

    return open_human_task(_services(), payload)


def gate_record_outcome(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.gates.activities import record_outcome

    return record_outcome(_services(), payload)


def gate_audit(payload: dict[str, Any]) -> dict[str, Any]:
    from gatekeeper.gates.activities import audit

    return audit(_services(), payload)

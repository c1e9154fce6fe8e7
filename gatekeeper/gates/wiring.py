"""Gate activity services built from the process runtime and app settings (Azure, `func start`).

Tests and the demo build GateServices explicitly over local servers; this is the production recipe.
"""

from __future__ import annotations

from gatekeeper import settings
from gatekeeper.gates.effects import PolicyDecider
from gatekeeper.gates.services import GateServices
from gatekeeper.runtime import Runtime, runtime


def gate_services_from_settings(rt: Runtime | None = None) -> GateServices:
    from azure.identity import DefaultAzureCredential

    from gatekeeper.integrations.factory import build_notifier, build_pipeline_callbacks

    rt = rt or runtime()
    client_id = settings.get("AZURE_CLIENT_ID")
    credential = DefaultAzureCredential(managed_identity_client_id=client_id) if client_id else DefaultAzureCredential()
    return GateServices(
        storage=rt.storage,
        cipher=rt.sealer,  # type: ignore[arg-type]
        decider=PolicyDecider(rt.policy_for),
        audit_for=rt.audit_for,
        notifier=build_notifier(credential=credential),
        callbacks=build_pipeline_callbacks(
            credential=credential,
            webhook_secret=rt.callback_secret,
            github_installations=rt.github_installations,
            webhook_allowed=rt.webhook_url_allowed,
        ),
        approval_base_url=settings.get("GATEKEEPER_APPROVAL_BASE_URL") or "http://localhost:7071",
        operators_for=rt.operators_for,
        directory=rt.user_directory,
    )

"""Turn a PipelineEvent into a plain document and back, secrets included.

Only ever used to produce the plaintext that goes straight into an envelope seal: the normal
`model_dump` masks secrets, which is right for logs and wrong for the callback we must make later.
"""

from __future__ import annotations

from typing import Any

from gatekeeper.events.model import AzureDevOpsCallback, PipelineEvent


def event_to_sealable(event: PipelineEvent) -> dict[str, Any]:
    document = event.model_dump(mode="json")
    if isinstance(event.callback, AzureDevOpsCallback):
        document["callback"]["auth_token"] = event.callback.auth_token.get_secret_value()
    return document


def event_from_sealable(document: dict[str, Any]) -> PipelineEvent:
    return PipelineEvent.model_validate(document)

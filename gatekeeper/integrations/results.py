"""The outcome of one pipeline callback, small and JSON-safe so it can travel through an orchestration
history and into the audit log as is."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

CallbackTarget = Literal["github", "azure-devops", "webhook"]
CallbackAction = Literal["complete", "progress"]


class CallbackResult(BaseModel):
    """`ok` is True only when the pipeline acknowledged the call (2xx). A final failure is returned, never
    raised: the caller audits it and alerts. `detail` never contains a token or signing secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    status_code: int | None = None
    attempts: int = 0
    detail: str = ""
    target: CallbackTarget | None = None
    action: CallbackAction = "complete"
    skipped: bool = False  # deliberately not sent (e.g. GitHub's comment budget is spent)

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

"""A tenant's Slack workspace: which workspace is theirs, where its secrets are, where requests go.

`TenantRecord.slack` holds one `SlackSettings`. The workspace id (`team.id`, `T...`) is registered as the
tenant's identity `slack:team:<id>` (so a Slack request finds its tenant by the workspace it names, and two
tenants can never claim one workspace); the bot token and the signing secret are references (`env:NAME`, a
Key Vault reference in Azure) like every other tenant secret, never values. Validated when the tenant file is
imported, each error naming its field (`slack.team_id: ...`).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Slack ids: workspace T..., enterprise grid E..., public channel C..., private channel G..., user U.../W...
TEAM_ID = re.compile(r"^T[A-Z0-9]{2,20}$")
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,20}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
SECRET_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
TEAM_IDENTITY_PREFIX = "slack:team:"


def _reference(value: str, name: str) -> str:
    if not isinstance(value, str) or not SECRET_REF.match(value):
        raise ValueError(
            f"{name} must look like env:SETTING_NAME; put the secret itself in an app setting "
            "(a Key Vault reference in Azure)"
        )
    return value


class SlackSettings(BaseModel):
    """One tenant's Slack app installation (`slack:` in the tenant file)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    team_id: str = Field(description="the workspace id (team.id), T followed by upper-case letters and digits")
    bot_token: str = Field(description="reference to the bot token (xoxb-...): env:SETTING_NAME")
    # several during rotation: a request verifies under any of them
    signing_secrets: tuple[str, ...] = Field(min_length=1, max_length=2)
    default_channel: str | None = None  # a channel that gets every approval request too (C... / G...)
    direct_messages: bool = True  # each approver gets the request as a direct message
    # A clicking Slack user whose Slack e-mail is an address of the Entra approver is linked automatically
    # (audited). Off: only `gatekeeper identities link` links Slack users.
    link_by_email: bool = True

    @field_validator("team_id")
    @classmethod
    def _team(cls, value: str) -> str:
        text = value.strip() if isinstance(value, str) else ""
        if not TEAM_ID.match(text):
            raise ValueError("must be a Slack workspace id (team.id), e.g. T0123ABCD")
        return text

    @field_validator("bot_token")
    @classmethod
    def _token(cls, value: str) -> str:
        return _reference(value, "bot_token")

    @field_validator("signing_secrets")
    @classmethod
    def _secrets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, ref in enumerate(value):
            _reference(ref, f"signing_secrets[{index}]")
        if len(set(value)) != len(value):
            raise ValueError("the same reference is listed twice")
        return value

    @field_validator("default_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip() if isinstance(value, str) else ""
        if not CHANNEL_ID.match(text):
            raise ValueError("must be a Slack channel id (C... or G...), not a channel name")
        return text

    @property
    def identity(self) -> str:
        """The registry identity that routes this workspace's requests to the tenant."""
        return TEAM_IDENTITY_PREFIX + self.team_id.lower()

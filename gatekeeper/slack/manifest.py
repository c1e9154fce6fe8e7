"""The Slack app manifest (`python -m gatekeeper package slack-app --out FILE`): what an admin pastes into
"Create New App > From an app manifest" at api.slack.com/apps.

One app per MSP deployment, installed in each client workspace that approves in Slack. It asks for the bot
scopes the channel uses and nothing else: `chat:write` (post and update requests), `im:write` (open the DM
with an approver), `users:read` and `users:read.email` (find an approver by address, and read a clicking
user's e-mail to verify their link). Its request URLs are the deployment's own routes, under
GATEKEEPER_APPROVAL_BASE_URL, which must be https.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.errors import InvalidInput

BOT_SCOPES = ("chat:write", "im:write", "users:read", "users:read.email")
MAX_NAME = 35  # Slack: display_information.name
NAME = re.compile(r"^[^\x00-\x1f<>]{1,35}$")


def slack_app_manifest(base_url: str | None, name: str = "Gatekeeper") -> dict[str, Any]:
    """The manifest as JSON; InvalidInput naming the setting or option at fault."""
    parts = urlsplit(base_url or "")
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment or parts.username:
        raise InvalidInput(
            "must be the app's public https base URL (Slack posts interactions only to https)",
            field="GATEKEEPER_APPROVAL_BASE_URL",
        )
    if not NAME.match(name.strip()):
        raise InvalidInput(f"1-{MAX_NAME} characters, no control characters or < >", field="--name")
    root = f"https://{parts.netloc}{parts.path.rstrip('/')}"
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name.strip(),
            "description": "Approve or reject deployments and commands that need a person (Gatekeeper).",
            "background_color": "#1d3557",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": False,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": name.strip(), "always_online": True},
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": {"request_url": f"{root}/api/slack/events", "bot_events": ["app_home_opened"]},
            "interactivity": {"is_enabled": True, "request_url": f"{root}/api/slack/interactions"},
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }

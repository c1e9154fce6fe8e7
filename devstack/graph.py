"""Local Microsoft Graph v1.0: activity notifications, mail, users, groups and group membership checks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from devstack.server import LocalServer, Response, bearer_token, empty_response, json_response
from gatekeeper.integrations.notify import GUID


def _lower_keys(value: Any) -> Any:
    """Graph property names are case-insensitive (msgraph-sdk sends `Message`, `SaveToSentItems`)."""
    if isinstance(value, dict):
        return {(k[:1].lower() + k[1:]) if not k.startswith("@") else k: _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


class LocalGraphServer(LocalServer):
    """Microsoft Graph v1.0: `users/{id}/teamwork/sendActivityNotification`,
    `teams/{id}/sendActivityNotification`, `users/{sender}/sendMail`, `users/{id or userPrincipalName}` (with
    `$select`; `users` entries carry `mail`, `userPrincipalName`, `proxyAddresses`), `groups/{id}` and
    `users/{id}/checkMemberGroups` (at most 20 group ids, answered from `memberships`: user id -> the
    groups it belongs to, nested ones included). `not_installed` lists users/teams without the Teams app
    (403, as Graph answers); `throttle_next` answers 429 with Retry-After."""

    name = "local Microsoft Graph"

    def __init__(
        self,
        token: str,
        *,
        users: dict[str, dict[str, Any]] | None = None,
        groups: dict[str, dict[str, Any]] | None = None,
        not_installed: Iterable[str] = (),
        memberships: dict[str, Iterable[str]] | None = None,
    ):
        super().__init__()
        self._token = token
        self.users = {k.lower(): v for k, v in (users or {}).items()}
        self.memberships = {k.lower(): {g.lower() for g in v} for k, v in (memberships or {}).items()}
        self.member_checks: list[dict[str, Any]] = []
        self.groups = {k.lower(): v for k, v in (groups or {}).items()}
        self.not_installed = {item.lower() for item in not_installed}
        self.activity_notifications: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []
        # the tenant app catalog (manifest id -> catalog id) and personal installations (user -> catalog ids);
        # `on_install(user)` is told about each new installation (the local Bot Connector's `install`)
        self.teams_apps: dict[str, str] = {}
        self.installed_apps: dict[str, set[str]] = {}
        self.on_install: Callable[[str], None] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1.0"

    def throttle_next(self, times: int, retry_after: int = 1, path_contains: str = "") -> None:
        self.fail_next(
            times,
            429,
            path_contains=path_contains,
            retry_after=retry_after,
            body={"error": {"code": "TooManyRequests", "message": "Too many requests; retry after the given seconds."}},
        )

    def _failure_body(self, status: int) -> Any:
        return {"error": {"code": "InjectedFailure", "message": f"injected failure {status}"}}

    @staticmethod
    def _error(status: int, code: str, message: str) -> Response:
        return json_response(status, {"error": {"code": code, "message": message}})

    def _check_activity(self, document: Any, team_scope: str | None) -> str | None:
        if not isinstance(document, dict):
            return "body must be a JSON object"
        topic = document.get("topic") or {}
        if topic.get("source") not in ("text", "entityUrl") or not topic.get("value"):
            return "topic.source must be text or entityUrl, with a value"
        if topic["source"] == "text" and not topic.get("webUrl"):
            return "topic.webUrl is required when topic.source is text"
        if not document.get("activityType"):
            return "activityType is required"
        if not (document.get("previewText") or {}).get("content"):
            return "previewText.content is required"
        if team_scope is not None:
            recipient = document.get("recipient") or {}
            if (
                recipient.get("@odata.type") != "#microsoft.graph.teamMembersNotificationRecipient"
                or str(recipient.get("teamId", "")).lower() != team_scope
            ):
                return "recipient must be a teamMembersNotificationRecipient for this team"
        return None

    def route(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        if bearer_token(headers) != self._token:
            return self._error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        parts = path.strip("/").split("/")
        if not parts or parts[0] != "v1.0":
            return self._error(404, "BadRequest", "Unsupported API version.")
        parts = parts[1:]
        try:
            document = _lower_keys(json.loads(body)) if body else None
        except ValueError:
            return self._error(400, "BadRequest", "Unable to read JSON request payload.")
        if (
            method == "POST"
            and len(parts) == 4
            and parts[0] == "users"
            and parts[2:] == ["teamwork", "sendActivityNotification"]
        ):
            return self._activity("user", parts[1], document)
        if method == "POST" and len(parts) == 3 and parts[0] == "teams" and parts[2] == "sendActivityNotification":
            return self._activity("team", parts[1], document)
        if method == "POST" and len(parts) == 3 and parts[0] == "users" and parts[2] == "sendMail":
            message = (document or {}).get("message") or {}
            recipients = message.get("toRecipients") or []
            if not message.get("subject") or not recipients:
                return self._error(400, "ErrorInvalidRecipients", "message.subject and toRecipients are required")
            with self._lock:
                self.mails.append(
                    {"sender": parts[1], "to": [r["emailAddress"]["address"] for r in recipients], "message": message}
                )
            return empty_response(202)
        if method == "GET" and parts == ["appCatalogs", "teamsApps"]:
            return self._teams_apps(query)
        if method == "POST" and len(parts) == 4 and parts[0] == "users" and parts[2:] == ["teamwork", "installedApps"]:
            return self._install(parts[1].lower(), document)
        if method == "POST" and len(parts) == 3 and parts[0] == "users" and parts[2] == "checkMemberGroups":
            return self._check_member_groups(parts[1].lower(), document)
        if method == "GET" and len(parts) == 2 and parts[0] in ("users", "groups"):
            directory = self.users if parts[0] == "users" else self.groups
            key, entry = parts[1].lower(), directory.get(parts[1].lower())
            if entry is None and parts[0] == "users":  # Graph also finds a user by userPrincipalName, not by mail
                key, entry = next(
                    ((k, v) for k, v in directory.items() if str(v.get("userPrincipalName", "")).lower() == key),
                    (key, None),
                )
            if entry is None:
                return self._error(404, "Request_ResourceNotFound", f"Resource '{parts[1]}' does not exist.")
            document = {"id": key, **entry}
            select = [f.strip() for v in query.get("$select", ()) for f in v.split(",") if f.strip()]
            if select:  # Graph returns only the selected properties (and the id)
                wanted = {f.lower() for f in select} | {"id"}
                document = {k: v for k, v in document.items() if k.lower() in wanted}
            context = f"https://graph.microsoft.com/v1.0/$metadata#{parts[0]}/$entity"
            return json_response(200, {"@odata.context": context, **document})
        return self._error(404, "UnknownAction", f"{method} /{'/'.join(parts)} is not served here.")

    def _teams_apps(self, query: dict[str, list[str]]) -> Response:
        wanted = (query.get("$filter") or [""])[0]
        match = re.fullmatch(r"externalId eq '([^']+)'", wanted.strip())
        apps = [
            {"id": catalog, "externalId": manifest, "displayName": "Gatekeeper", "distributionMethod": "organization"}
            for manifest, catalog in self.teams_apps.items()
            if match is None or manifest.lower() == match.group(1).lower()
        ]
        return json_response(
            200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#appCatalogs/teamsApps", "value": apps}
        )

    def _install(self, user: str, document: Any) -> Response:
        bind = (document or {}).get("teamsApp@odata.bind") if isinstance(document, dict) else None
        catalog = str(bind).rsplit("/", 1)[-1] if isinstance(bind, str) and "/appCatalogs/teamsApps/" in bind else None
        if catalog is None or catalog not in self.teams_apps.values():
            return self._error(400, "BadRequest", "teamsApp@odata.bind must name an app of the tenant catalog.")
        with self._lock:
            installed = self.installed_apps.setdefault(user, set())
            if catalog in installed:
                return self._error(409, "Conflict", "The app is already installed for this user.")
            installed.add(catalog)
        self.not_installed.discard(user)
        if self.on_install is not None:
            self.on_install(user)
        return empty_response(201)

    def _check_member_groups(self, user: str, document: Any) -> Response:
        ids = document.get("groupIds") if isinstance(document, dict) else None
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and GUID.match(i) for i in ids):
            return self._error(400, "Request_BadRequest", "groupIds must be a non-empty list of group object ids.")
        if len(ids) > 20:
            return self._error(400, "Request_BadRequest", "checkMemberGroups accepts at most 20 group ids.")
        if user not in self.users and user not in self.memberships:
            return self._error(404, "Request_ResourceNotFound", f"Resource '{user}' does not exist.")
        with self._lock:
            self.member_checks.append({"user": user, "group_ids": list(ids)})
        member_of = self.memberships.get(user, set())
        value = [i for i in ids if i.lower() in member_of]
        context = "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)"
        return json_response(200, {"@odata.context": context, "value": value})

    def _activity(self, scope: str, target: str, document: Any) -> Response:
        problem = self._check_activity(document, target.lower() if scope == "team" else None)
        if problem:
            return self._error(400, "BadRequest", problem)
        if target.lower() in self.not_installed:
            return self._error(
                403,
                "Forbidden",
                (
                    "Application is not authorized to generate custom text notifications to the recipient. Ensure "
                    "that the expected Teams app is installed in the target scope (user, team, or chat)."
                ),
            )
        with self._lock:
            self.activity_notifications.append({"scope": scope, "target": target, "body": document})
        return empty_response(204)

    def report(self) -> list[str]:
        with self._lock:
            lines = [
                f"Teams activity feed ({n['scope']} {n['target']}): {n['body']['activityType']} - "
                f"{n['body']['topic']['value']} -> {n['body']['topic']['webUrl']}"
                for n in self.activity_notifications
            ]
            lines += [f"Mail from {m['sender']} to {', '.join(m['to'])}: {m['message']['subject']}" for m in self.mails]
        return lines

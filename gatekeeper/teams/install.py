"""Install the bot's Teams app for a user through Microsoft Graph, so the bot may open a 1:1 chat.

`GET /appCatalogs/teamsApps?$filter=externalId eq '<manifest id>'` finds the app the tenant uploaded
(GATEKEEPER_TEAMS_APP_ID is the manifest's `id`); `POST /users/{id}/teamwork/installedApps` with
`teamsApp@odata.bind` installs it in the user's personal scope (application permission
`TeamsAppInstallation.ReadWriteForUser.All`). An app that is already installed (409) counts as installed.
"""

from __future__ import annotations

import logging
import re
import threading

import httpx
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.app_catalogs.teams_apps.teams_apps_request_builder import TeamsAppsRequestBuilder
from msgraph.generated.models.user_scope_teams_app_installation import UserScopeTeamsAppInstallation

from gatekeeper.integrations.graph_notify import GraphSession, graph_error_text

log = logging.getLogger("gatekeeper.teams")

_MANIFEST_ID = re.compile(r"^[0-9a-fA-F-]{36}$")


class AppInstallFailed(Exception):
    pass


class GraphAppInstaller(GraphSession):
    def __init__(
        self,
        graph_client: GraphServiceClient,
        teams_app_id: str,
        graph_base_url: str,
        *,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 15.0,
    ) -> None:
        if not _MANIFEST_ID.match(teams_app_id or ""):
            raise ValueError("GATEKEEPER_TEAMS_APP_ID: the Teams app manifest id (a GUID) is required")
        self._client = graph_client
        self._manifest_id = teams_app_id.lower()
        self._base = graph_base_url.rstrip("/")
        self._timeout = timeout
        self._catalog_id: str | None = None
        self._lock = threading.Lock()
        super().__init__(http_client)

    def __repr__(self) -> str:
        return f"GraphAppInstaller(teams_app_id={self._manifest_id!r})"

    def install(self, user_oid: str) -> None:
        try:
            self._runner.run(self._install(user_oid), timeout=self._timeout)
        except AppInstallFailed:
            raise
        except Exception as exc:
            status, text = graph_error_text(exc)
            if status == 409:
                return  # already installed
            log.warning("graph: installing the Teams app failed: %s", text)
            raise AppInstallFailed(text) from None

    async def _catalog(self) -> str:
        with self._lock:
            if self._catalog_id is not None:
                return self._catalog_id
        query = TeamsAppsRequestBuilder.TeamsAppsRequestBuilderGetQueryParameters(
            filter=f"externalId eq '{self._manifest_id}'"
        )
        found = await self._client.app_catalogs.teams_apps.get(RequestConfiguration(query_parameters=query))
        apps = [a for a in (found.value if found and found.value else []) if a.id]
        if not apps:
            raise AppInstallFailed("the Teams app is not in the tenant's app catalog; upload it first")
        with self._lock:
            self._catalog_id = str(apps[0].id)
            return self._catalog_id

    async def _install(self, user_oid: str) -> None:
        catalog_id = await self._catalog()
        body = UserScopeTeamsAppInstallation(
            additional_data={"teamsApp@odata.bind": f"{self._base}/appCatalogs/teamsApps/{catalog_id}"}
        )
        await self._client.users.by_user_id(user_oid).teamwork.installed_apps.post(body)

"""Every address of a user through Microsoft Graph `GET /users/{id | userPrincipalName}` (msgraph-sdk).

Separation of duties compares object ids; where a requester is only known by an address (an Azure DevOps
unique name, a mail alias, a CI's actor field) the approver's addresses are needed too: `mail`,
`userPrincipalName` and the SMTP entries of `proxyAddresses`. Graph answers `GET /users/{key}` for an object
id or a user principal name (not for a secondary address), which is also how a requester's UPN resolves to
an object id. Application permission: User.Read.All (already granted for group checks).

`CachedUserDirectory` keeps answers (a user, or "no such user") for a few minutes: approvers open the page
and vote, and a gate's evaluation and its votes ask about the same people.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphServiceClient
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

from gatekeeper.integrations.graph_notify import GraphSession, graph_error_text
from gatekeeper.security.requester import DirectoryUnavailable, DirectoryUser, UserDirectory, user_addresses
from gatekeeper.ttl_cache import TtlCache

log = logging.getLogger("gatekeeper.integrations.graph")

SELECT = ["id", "mail", "userPrincipalName", "proxyAddresses"]
_SAFE_KEY = frozenset("abcdefghijklmnopqrstuvwxyz0123456789@._-+'")


class GraphUserDirectory(GraphSession):
    def __init__(
        self, graph_client: GraphServiceClient, *, http_client: httpx.AsyncClient | None = None, timeout: float = 10.0
    ) -> None:
        self._client = graph_client
        self._timeout = timeout
        super().__init__(http_client)

    def __repr__(self) -> str:
        return "GraphUserDirectory()"

    def user(self, id_or_upn: str) -> DirectoryUser | None:
        key = (id_or_upn or "").strip().lower()
        if not key or len(key) > 256 or not set(key) <= _SAFE_KEY:
            return None  # not an object id or a UPN: nobody, and nothing odd goes into a URL
        try:
            return self._runner.run(self._get(key), timeout=self._timeout)
        except Exception as exc:
            status, text = graph_error_text(exc)
            if status == 404:
                return None
            log.warning("graph GET /users failed: %s", text)
            raise DirectoryUnavailable(f"Microsoft Graph GET /users failed ({text})") from None

    async def _get(self, key: str) -> DirectoryUser | None:
        user = await self._client.users.by_user_id(key).get(
            RequestConfiguration(
                query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(select=SELECT)
            )
        )
        if user is None or not user.id:
            return None
        addresses = user_addresses(user.mail, user.user_principal_name, user.proxy_addresses)
        upn = user.user_principal_name.strip().lower() if user.user_principal_name else None
        return DirectoryUser(oid=str(user.id).lower(), addresses=addresses, upn=upn)


class CachedUserDirectory:
    """Remembers each answer for `ttl_seconds` (a user, or that there is none), bounded in size; failures
    are not remembered. An address change takes effect within the TTL."""

    def __init__(
        self,
        directory: UserDirectory,
        *,
        ttl_seconds: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._answers: TtlCache[str, DirectoryUser | None] = TtlCache(
            ttl_seconds=ttl_seconds, max_entries=max_entries, clock=clock
        )

    def close(self) -> None:
        close = getattr(self._directory, "close", None)
        if callable(close):
            close()

    def user(self, id_or_upn: str) -> DirectoryUser | None:
        key = (id_or_upn or "").strip().lower()
        hit, cached = self._answers.get(key)
        if hit:
            return cached
        found = self._directory.user(key)
        self._answers.put((k, found) for k in ({key, found.oid} if found is not None else {key}))
        return found

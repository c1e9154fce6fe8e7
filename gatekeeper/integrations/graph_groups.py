"""Group membership through Microsoft Graph `POST /users/{id}/checkMemberGroups` (msgraph-sdk).

Used when a caller's token has too many groups to list them (see `gatekeeper.security.groups`). Graph
answers which of at most 20 given group ids the user belongs to, transitively; longer lists are asked in
batches. The application permissions are User.Read.All and GroupMember.Read.All (granted by
`python -m gatekeeper admin grant-graph-permissions`). The credential reads one directory, its own: users of other Entra
tenants are not served, and the decision route says so.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import httpx
from msgraph import GraphServiceClient
from msgraph.generated.users.item.check_member_groups.check_member_groups_post_request_body import (
    CheckMemberGroupsPostRequestBody,
)

from gatekeeper.integrations.graph_notify import GraphSession, graph_error_text
from gatekeeper.integrations.notify import GUID
from gatekeeper.security.groups import GroupLookupUnavailable

log = logging.getLogger("gatekeeper.integrations.graph")

BATCH = 20  # Graph's limit of group ids per checkMemberGroups request


class GraphGroupMembership(GraphSession):
    def __init__(
        self,
        graph_client: GraphServiceClient,
        entra_tenant: str,
        *,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
    ) -> None:
        if not GUID.match(entra_tenant or ""):
            raise ValueError("must be the Entra tenant id (a GUID), not a domain name")
        self._client = graph_client
        self._tenant = entra_tenant.lower()
        self._timeout = timeout
        super().__init__(http_client)

    def __repr__(self) -> str:
        return f"GraphGroupMembership(entra_tenant={self._tenant!r})"

    def serves(self, entra_tenant: str) -> bool:
        return entra_tenant.lower() == self._tenant

    def member_groups(self, entra_tenant: str, user_oid: str, group_ids: Collection[str]) -> frozenset[str]:
        if not self.serves(entra_tenant):
            raise GroupLookupUnavailable(f"Entra tenant {entra_tenant} is not the directory this lookup reads")
        # Graph refuses the whole request when one id is not an object id; such an id names no one's group.
        wanted = sorted(g for g in {g.lower() for g in group_ids} if GUID.match(g))
        if not wanted:
            return frozenset()
        try:
            return self._runner.run(self._check(user_oid, wanted), timeout=self._timeout)
        except Exception as exc:  # the SDK's errors, httpx's, or the timeout: all mean "cannot tell now"
            _, text = graph_error_text(exc)
            log.warning("graph checkMemberGroups failed: %s", text)
            raise GroupLookupUnavailable(f"Microsoft Graph checkMemberGroups failed ({text})") from None

    async def _check(self, user_oid: str, wanted: list[str]) -> frozenset[str]:
        found: set[str] = set()
        user = self._client.users.by_user_id(user_oid)
        for start in range(0, len(wanted), BATCH):
            batch = wanted[start : start + BATCH]
            response = await user.check_member_groups.post(CheckMemberGroupsPostRequestBody(group_ids=batch))
            if response is None or not isinstance(response.value, list):
                raise ValueError("checkMemberGroups answered without a value list")  # not "no groups"
            found |= {str(g).lower() for g in response.value} & set(batch)  # never trust ids not asked about
        return frozenset(found)

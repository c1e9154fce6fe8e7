"""Group membership for callers whose token could not list their groups (the Entra ID "groups overage").

Entra ID puts at most 200 group ids in a JWT (fewer in SAML and implicit-flow tokens); past that the token
carries `hasgroups` or a `_claim_names` pointer to Microsoft Graph instead. An approval chain that names
`group:<id>` must then ask the directory. Only the groups the chain names are asked about, so the answer is
a subset of a short list, never the caller's whole membership.

The lookup is a port: `gatekeeper.integrations.graph_groups.GraphGroupMembership` asks Graph's
`checkMemberGroups` (transitive); `CachedGroupMembership` keeps answers for a few minutes so a person
opening the approval page and then voting costs one directory call, not two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Protocol

from gatekeeper.ttl_cache import TtlCache


class GroupLookupUnavailable(RuntimeError):
    """The directory could not answer now (down, throttled past retries, no permission). Retryable; the
    message names the cause, never a token."""


class GroupMembership(Protocol):
    def serves(self, entra_tenant: str) -> bool:
        """True when this lookup can read the directory of `entra_tenant`."""
        ...

    def member_groups(self, entra_tenant: str, user_oid: str, group_ids: Collection[str]) -> frozenset[str]:
        """The ids among `group_ids` (lower case) that the user is a member of, directly or through nested
        groups. Raises GroupLookupUnavailable."""
        ...


class CachedGroupMembership:
    """Remembers each (tenant, user, group) answer, yes or no, for `ttl_seconds`, and asks the wrapped lookup
    only about the groups it does not know. Bounded: the oldest answers go first past `max_entries`.

    A membership change therefore takes effect within the TTL, which is well inside the lifetime of the
    token whose group claims it stands in for (about an hour)."""

    def __init__(
        self,
        lookup: GroupMembership,
        *,
        ttl_seconds: float = 300.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._answers: TtlCache[tuple[str, str, str], bool] = TtlCache(
            ttl_seconds=ttl_seconds, max_entries=max_entries, clock=clock
        )

    def serves(self, entra_tenant: str) -> bool:
        return self._lookup.serves(entra_tenant)

    def close(self) -> None:
        """Close the wrapped lookup when it holds connections (the Graph one does)."""
        close = getattr(self._lookup, "close", None)
        if callable(close):
            close()

    def member_groups(self, entra_tenant: str, user_oid: str, group_ids: Collection[str]) -> frozenset[str]:
        tenant, user = entra_tenant.lower(), user_oid.lower()
        wanted = {g.lower() for g in group_ids}
        known: dict[str, bool] = {}
        for group in wanted:
            hit, member = self._answers.get((tenant, user, group))
            if hit:
                known[group] = bool(member)
        unknown = wanted - known.keys()
        if unknown:
            found = {g.lower() for g in self._lookup.member_groups(entra_tenant, user_oid, sorted(unknown))}
            self._answers.put(((tenant, user, group), group in found) for group in unknown)
            known.update({group: group in found for group in unknown})
        return frozenset(group for group, member in known.items() if member)

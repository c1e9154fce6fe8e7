"""Who may export a tenant's audit log over HTTP: a person or service of that tenant's own Entra tenant
holding the `Gatekeeper.Auditor` app role. Everyone else, including callers naming a tenant that does not
exist, gets the same 403, so the route reveals nothing about which tenants exist."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from gatekeeper.errors import Forbidden, MalformedInput
from gatekeeper.security.principal import AUDITOR_ROLE, Principal, wrong_tenant


def authorize_auditor(principal: Principal, tenant_id: str, entra_tenants_for: Callable[[str], Iterable[str]]) -> None:
    allowed = {t.strip().lower() for t in entra_tenants_for(tenant_id)}
    if principal.tid.lower() not in allowed:
        raise wrong_tenant()
    if not principal.has_role(AUDITOR_ROLE):
        raise Forbidden(f"Exporting the audit log needs the app role '{AUDITOR_ROLE}'.")


def _invalid_query(detail: str, name: str) -> MalformedInput:
    return MalformedInput(detail, name, code="invalid-query", title="Invalid query parameter")


def parse_range(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid_query(f"{name}: not an ISO 8601 instant", name) from None
    if parsed.tzinfo is None:
        raise _invalid_query(f"{name}: needs a time zone", name)
    try:  # 0001-01-01T00:00:00+14:00 parses but has no UTC equivalent; every comparison would overflow
        parsed.astimezone(UTC)
    except OverflowError:
        raise _invalid_query(f"{name}: outside the representable range", name) from None
    return parsed

"""Untrusted hints that say which tenant a request claims to belong to, read BEFORE its signature is checked.

Tenant resolution needs a tenant before it can fetch that tenant's webhook secret, so it must look at the
unverified body. These hints are only lookup keys: a wrong hint finds the wrong (or no) secret and the
signature check then fails. Hence two rules: never trust them for anything else, and never raise on garbage
(a crafted body must not turn into a 500). Most specific first, so a repository mapped to one customer wins
over the organisation mapped to the MSP.

Formats (values lower-cased where the vendor treats them case-insensitively):
- `github:repo:<owner/name>`, `github:installation:<id>`, `github:org:<login>`
- `azure-devops:org:<organization URL with trailing slash>` (service hook `resourceContainers.*.baseUrl`, or
  the check's `PlanUrl` header), then `azure-devops:account:<organization GUID>` (service hook
  `resourceContainers.account.id`, present even where `baseUrl` is not, as in the published samples)
- `connectwise:company:<CompanyId>`, `autotask:account:<id>`, `halopsa:instance:<host>`, `ninjarmm:org:<id>`
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.events.common import dedupe, header
from gatekeeper.events.hints import clean, get_path
from gatekeeper.events.model import EventSource

_GUID = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")


def _org_url(value: Any) -> str | None:
    """Normalise an Azure DevOps organisation/collection URL: lower case, http(s), one trailing slash."""
    text = clean(value)
    if text is None:
        return None
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"


def _github(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    repo = clean(get_path(payload, "repository", "full_name"))
    if repo and repo.count("/") == 1:
        yield f"github:repo:{repo}"
    installation = clean(get_path(payload, "installation", "id"))
    if installation and installation.isdigit():
        yield f"github:installation:{installation}"
    for login in (get_path(payload, "organization", "login"), get_path(payload, "repository", "owner", "login")):
        org = clean(login)
        if org and "/" not in org:
            yield f"github:org:{org}"


def _azure_devops(payload: Mapping[str, Any], headers: Mapping[str, str] | None) -> Iterator[str]:
    containers = payload.get("resourceContainers")
    for name in ("collection", "account", "project"):
        url = _org_url(get_path(containers, name, "baseUrl"))
        if url:
            yield f"azure-devops:org:{url}"
    url = _org_url(header(headers, "PlanUrl"))
    if url:
        yield f"azure-devops:org:{url}"
    # Service hooks always carry the organisation's account id; the published samples carry nothing else.
    account = clean(get_path(containers, "account", "id"))
    if account and _GUID.match(account):
        yield f"azure-devops:account:{account}"


Finder = Callable[[Mapping[str, Any], Mapping[str, str] | None], Iterator[str]]
_BY_SOURCE: dict[EventSource, Finder] = {EventSource.GITHUB: _github, EventSource.AZURE_DEVOPS: _azure_devops}


def _finder(source: EventSource) -> Finder | None:
    """The hint finder of `source`; the connectors' table is imported only for a connector message, so the
    HTTP routes do not load every vendor's payload models (cold start)."""
    found = _BY_SOURCE.get(source)
    if found is None:
        from gatekeeper.events.connectors import BY_SOURCE as CONNECTORS_BY_SOURCE

        connector = CONNECTORS_BY_SOURCE.get(source)
        found = connector.identity_hints if connector is not None else None
    return found


def source_identities(source: EventSource | str, payload: Any, headers: Mapping[str, str] | None = None) -> list[str]:
    """Tenant lookup hints claimed by an unverified request, most specific first; [] when there are none.

    Never raises: any surprise in the input means "no hint", and the request then fails authentication.
    """
    try:
        finder = _finder(EventSource(source))
        if finder is None:
            return []
        body = payload if isinstance(payload, Mapping) else {}
        return dedupe(finder(body, headers if isinstance(headers, Mapping) else None))
    except Exception:  # garbage in must never become a 500 before authentication
        return []

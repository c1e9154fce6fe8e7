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

from gatekeeper.events.common import ci_get, dedupe, header
from gatekeeper.events.model import EventSource

_MAX_LEN = 256
_SAFE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces or control characters
_GUID = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")


def _clean(value: Any, *, lower: bool = True) -> str | None:
    """A usable identity component, or None for anything odd (wrong type, empty, huge, control chars)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if value > 0 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > _MAX_LEN or not _SAFE.match(text):
        return None
    return text.lower() if lower else text


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _org_url(value: Any) -> str | None:
    """Normalise an Azure DevOps organisation/collection URL: lower case, http(s), one trailing slash."""
    text = _clean(value)
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
    repo = _clean(_get(payload, "repository", "full_name"))
    if repo and repo.count("/") == 1:
        yield f"github:repo:{repo}"
    installation = _clean(_get(payload, "installation", "id"))
    if installation and installation.isdigit():
        yield f"github:installation:{installation}"
    for login in (_get(payload, "organization", "login"), _get(payload, "repository", "owner", "login")):
        org = _clean(login)
        if org and "/" not in org:
            yield f"github:org:{org}"


def _azure_devops(payload: Mapping[str, Any], headers: Mapping[str, str] | None) -> Iterator[str]:
    containers = payload.get("resourceContainers")
    for name in ("collection", "account", "project"):
        url = _org_url(_get(containers, name, "baseUrl"))
        if url:
            yield f"azure-devops:org:{url}"
    url = _org_url(header(headers, "PlanUrl"))
    if url:
        yield f"azure-devops:org:{url}"
    # Service hooks always carry the organisation's account id; the published samples carry nothing else.
    account = _clean(_get(containers, "account", "id"))
    if account and _GUID.match(account):
        yield f"azure-devops:account:{account}"


def _envelope(payload: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """Connector queue messages wrap the vendor body; accept either the envelope or the bare body."""
    inner = payload.get("payload")
    if "connector" in payload and isinstance(inner, Mapping):
        return _clean(payload.get("account")), inner
    return None, payload


def _connectwise(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, body = _envelope(payload)
    for value in (account, _clean(body.get("CompanyId"))):
        if value:
            yield f"connectwise:company:{value}"


def _autotask(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, body = _envelope(payload)
    company = _clean(ci_get(body.get("Fields"), "CompanyID", "AccountID"))
    for value in (account, company):
        if value:
            yield f"autotask:account:{value}"


def _halopsa(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, _body = _envelope(payload)
    if account:
        host = urlsplit(account).hostname if "://" in account else account
        if host:
            yield f"halopsa:instance:{host.rstrip('/')}"


def _ninjarmm(payload: Mapping[str, Any], _headers: Mapping[str, str] | None) -> Iterator[str]:
    account, body = _envelope(payload)
    org = _clean(_get(body, "device", "organizationId")) or _clean(body.get("organizationId"))
    for value in (account, org):
        if value:
            yield f"ninjarmm:org:{value}"


_BY_SOURCE: dict[EventSource, Callable[[Mapping[str, Any], Mapping[str, str] | None], Iterator[str]]] = {
    EventSource.GITHUB: _github,
    EventSource.AZURE_DEVOPS: _azure_devops,
    EventSource.CONNECTWISE: _connectwise,
    EventSource.AUTOTASK: _autotask,
    EventSource.HALOPSA: _halopsa,
    EventSource.NINJARMM: _ninjarmm,
}


def source_identities(source: EventSource | str, payload: Any, headers: Mapping[str, str] | None = None) -> list[str]:
    """Tenant lookup hints claimed by an unverified request, most specific first; [] when there are none.

    Never raises: any surprise in the input means "no hint", and the request then fails authentication.
    """
    try:
        finder = _BY_SOURCE.get(EventSource(source))
        if finder is None:
            return []
        body = payload if isinstance(payload, Mapping) else {}
        return dedupe(finder(body, headers if isinstance(headers, Mapping) else None))
    except Exception:  # garbage in must never become a 500 before authentication
        return []

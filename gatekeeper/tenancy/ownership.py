"""What "belongs to a tenant" means for each kind of target a request can name.

The tenant comes from the credential; every target the request then names must be one of that tenant's
registered identities. The rules, kind by kind:

- A GitHub repository `owner/name` belongs to the tenant registered with `github:repo:owner/name` or with
  `github:org:owner` (an organisation or user account owns all its repositories). An installation id alone
  never proves a repository: an installation says which App token to use, not whose code it is, and it is
  only known by its number (the registry does not know the installation's account).
- A GitHub organisation `login` belongs to the tenant registered with `github:org:login`, or with a
  `github:repo:login/...` (the organisation of a registered repository).
- A GitHub App installation belongs to the tenant registered with `github:installation:<id>`; callbacks use
  only such installations.
- An Azure DevOps organisation URL or account id belongs to the tenant registered with that exact
  `azure-devops:org:<url>` / `azure-devops:account:<id>`.
- A connector account belongs to the tenant registered with that connector identity.
- A webhook callback URL belongs to the tenant when it lies under one of its `callback_url_prefixes`
  (same scheme, host and port; the path at or below the prefix's path; no `.`/`..` segments).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from gatekeeper.addresses import is_local_host


def normalise_identity(identity: str) -> str:
    """Identities compare case-insensitively; organisation URLs end with exactly one slash."""
    prefix = "azure-devops:org:"
    if identity.startswith(prefix):
        return prefix + identity[len(prefix) :].lower().rstrip("/") + "/"
    return identity.lower()


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _ids(identities: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise_identity(i) for i in identities)


def github_installations(identities: Iterable[str]) -> frozenset[int]:
    """The App installation ids registered for a tenant."""
    prefix = "github:installation:"
    numbers = (i[len(prefix) :] for i in _ids(identities) if i.startswith(prefix))
    return frozenset(int(number) for number in numbers if number.isdigit())


def owns_github_repository(identities: Iterable[str], full_name: str) -> bool:
    ids = _ids(identities)
    name = full_name.strip().lower()
    if name.count("/") != 1 or not all(name.split("/")):
        return False
    owner = name.split("/")[0]
    return f"github:repo:{name}" in ids or f"github:org:{owner}" in ids


def owns_github_org(identities: Iterable[str], login: str) -> bool:
    ids = _ids(identities)
    org = login.strip().lower()
    return bool(org) and (f"github:org:{org}" in ids or any(i.startswith(f"github:repo:{org}/") for i in ids))


def owns_identity(identities: Iterable[str], identity: str) -> bool:
    """Exact registration (Azure DevOps organisations and accounts, connector accounts)."""
    return normalise_identity(identity) in _ids(identities)


# --- webhook callback URLs ---------------------------------------------------------------------------------


def normalise_callback_prefix(prefix: str, where: str = "callback_url_prefixes") -> str:
    """Validate a registry prefix: absolute https (http only for loopback), no credentials, query or fragment."""
    try:
        parts = urlsplit(prefix.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"{where}: {prefix!r} is not a valid URL") from None
    if not host or parts.scheme not in ("https", "http"):
        raise ValueError(f"{where}: {prefix!r} must be an absolute https URL")
    if parts.scheme == "http" and not is_local_host(host):
        raise ValueError(f"{where}: {prefix!r} must use https (http only for loopback development)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"{where}: {prefix!r} must not carry credentials, a query or a fragment")
    if _has_dot_segments(parts.path):
        raise ValueError(f"{where}: {prefix!r} must not contain '.' or '..' path segments")
    netloc = host if parts.port in (None, _DEFAULT_PORTS[parts.scheme]) else f"{host}:{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path or '/'}"


def _has_dot_segments(path: str) -> bool:
    return any(segment in (".", "..") or "%2e" in segment.lower() for segment in path.split("/"))


def callback_url_allowed(prefixes: Iterable[str], url: str) -> bool:
    """True when `url` lies under one of `prefixes` (see the module docstring)."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return False
    if not host or parts.username or parts.password or _has_dot_segments(parts.path):
        return False
    path = parts.path or "/"
    for prefix in prefixes:
        allowed = urlsplit(prefix)
        if (allowed.scheme, (allowed.hostname or "").lower()) != (parts.scheme, host):
            continue
        if (allowed.port or _DEFAULT_PORTS.get(allowed.scheme)) != port:
            continue
        base = allowed.path or "/"
        if path == base.rstrip("/") or path.startswith(base if base.endswith("/") else base + "/"):
            return True
    return False

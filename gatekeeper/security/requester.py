"""Who asked for a gate, as an identity that can be compared, never as a free-text name.

The requester is resolved once, when the gate is evaluated, into a `Requester`: the Entra object id when
one is known (authenticated bearer token, or an external identity the tenant's identity map links to an
object id, or an address the directory knows as a user principal name), the raw external identities the
request was seen as, and every address the person is known by (`mail`, `userPrincipalName`,
`proxyAddresses`). Separation of duties then compares object ids, and where only names exist, case-folded,
normalised addresses against all of them.

External identities are namespaced strings, `<provider>:<kind>:<value>`:
- `entra:oid:<guid>`: the authenticated caller (bearer token on `POST /api/events`); never from a body;
- `github:login:<login>`, `github:id:<number>`: the GitHub `sender` (and deployment creator);
- `azure-devops:id:<guid>`, `azure-devops:descriptor:<descriptor>`, `azure-devops:unique:<unique name>`,
  `azure-devops:name:<display name>` (display names are shown and compared, never linked: not unique);
- `<psa vendor>:member:<id>` for ConnectWise, Autotask, HaloPSA and NinjaOne members;
- `claim:actor:<text>`: a caller's unauthenticated statement of who asked (generic API with a function key).

A requester without an object id is *unresolved*, never "nobody": policy (`unresolved_requester`) then
requires one extra distinct approver or denies.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

GUID = re.compile(r"^[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}$")
SLACK_USER = re.compile(r"^T[A-Z0-9]{2,20}/[UW][A-Z0-9]{2,20}$", re.IGNORECASE)  # team id / user id
MAX_VALUE = 256

# Identities a tenant may link to an object id (`gatekeeper identities link`): provider -> kinds.
LINKABLE: dict[str, frozenset[str]] = {
    "github": frozenset({"login", "id"}),
    "azure-devops": frozenset({"id", "descriptor", "unique"}),
    "connectwise": frozenset({"member"}),
    "autotask": frozenset({"member"}),
    "halopsa": frozenset({"member"}),
    "ninjarmm": frozenset({"member"}),
    "slack": frozenset({"user"}),  # slack:user:<team id>/<user id> (gatekeeper.slack.identity)
}


def normalise_address(value: str | None) -> str | None:
    """A mail address in the one form comparisons use, or None when `value` is not an address.

    Unicode NFKC, surrounding space and angle brackets off, `smtp:`/`SMTP:`/`mailto:` prefixes off (the
    forms `proxyAddresses` and links carry), case-folded (mail systems treat local parts case-insensitively
    in practice, and Entra does for UPNs)."""
    if not isinstance(value, str):
        return None
    text = unicodedata.normalize("NFKC", value).strip().strip("<>").strip()
    lowered = text.casefold()
    for prefix in ("smtp:", "mailto:"):
        if lowered.startswith(prefix):
            lowered = lowered[len(prefix) :].strip()
    local, at, domain = lowered.rpartition("@")
    if not at or not local or not domain or "." not in domain or any(c.isspace() for c in lowered):
        return None
    if len(lowered) > MAX_VALUE:
        return None
    return lowered


def external_id(provider: str, kind: str, value: object) -> str | None:
    """`provider:kind:value` with the value normalised (addresses case-folded, the rest lower case), or
    None for an empty, huge or non-text value. Never raises: parsers call it on untrusted payloads."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value) if isinstance(value, int) else value
    if not isinstance(text, str):
        return None
    text = unicodedata.normalize("NFKC", text).strip()
    if not text or len(text) > MAX_VALUE or any(ord(c) < 32 for c in text):
        return None
    return f"{provider}:{kind}:{normalise_address(text) or text.casefold()}"


def parse_external(text: str) -> str:
    """Validate a linkable external identity typed by an operator; raises ValueError saying what is wrong."""
    provider, _, rest = (text or "").strip().partition(":")
    kind, _, value = rest.partition(":")
    provider, kind = provider.lower(), kind.lower()
    if provider not in LINKABLE:
        raise ValueError(f"provider must be one of {', '.join(sorted(LINKABLE))} (as provider:kind:value)")
    if kind not in LINKABLE[provider]:
        raise ValueError(f"{provider} identities are {', '.join(sorted(LINKABLE[provider]))}, not {kind!r}")
    if provider == "github" and kind == "id" and not value.strip().isdigit():
        raise ValueError("a GitHub user id is a number")
    if provider == "azure-devops" and kind == "id" and not GUID.match(value.strip().lower()):
        raise ValueError("an Azure DevOps identity id is a GUID")
    if provider == "slack" and not SLACK_USER.match(value.strip()):
        raise ValueError("a Slack user is <workspace id>/<user id>, e.g. T0123ABCD/U0456EFGH")
    normalised = external_id(provider, kind, value)
    if normalised is None:
        raise ValueError("the value is empty, longer than 256 characters or holds control characters")
    return normalised


def is_linkable(identity: str) -> bool:
    provider, _, rest = identity.partition(":")
    return rest.partition(":")[0] in LINKABLE.get(provider, frozenset())


def value_of(identity: str) -> str:
    return identity.split(":", 2)[2] if identity.count(":") >= 2 else identity


class Requester(BaseModel):
    """The requester of one gate, persisted with it. `resolved` means an Entra object id is known."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    oid: str | None = Field(default=None, max_length=64)
    resolved: bool = False
    seen_as: tuple[str, ...] = ()  # the raw external identities, namespaced
    aliases: tuple[str, ...] = ()  # addresses (normalised) and further object ids the person is known by
    display: str | None = Field(default=None, max_length=256)  # the claimed actor, shown, never trusted
    note: str | None = None  # why it is unresolved, for the approver
    # The directory's names for `oid` (Graph displayName and userPrincipalName), shown to approvers; None on
    # requesters resolved before they were kept, or when the directory could not be asked.
    display_name: str | None = Field(default=None, max_length=256)
    upn: str | None = Field(default=None, max_length=256)

    def identities(self) -> tuple[str, ...]:
        """Everything an approver is compared against, lower case: the object id, every alias, and each
        seen identity (as an address where it is one, else namespaced so it never collides by accident)."""
        found: list[str] = []
        if self.oid:
            found.append(self.oid.lower())
        found += [a.lower() for a in self.aliases]
        for seen in self.seen_as:
            if seen.startswith("entra:oid:"):
                found.append(value_of(seen))
                continue
            found.append(normalise_address(value_of(seen)) or seen.lower())
        return tuple(dict.fromkeys(found))

    def needs_names(self) -> bool:
        """True when a comparison by object id alone may miss: some identity is only a name or address."""
        return any(i != (self.oid or "").lower() and not GUID.match(i) for i in self.identities())


class DirectoryUser(BaseModel):
    """A user as the directory knows them: object id and every address."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    oid: str
    addresses: frozenset[str] = frozenset()
    display_name: str | None = None  # Graph `displayName`: shown, never compared
    upn: str | None = None  # Graph `userPrincipalName`, as the directory spells it


class DirectoryUnavailable(RuntimeError):
    """The directory could not answer now; the message names the cause, never a token."""


class UserDirectory(Protocol):
    def user(self, id_or_upn: str) -> DirectoryUser | None:
        """The user with this object id or user principal name, or None when there is none.
        Raises DirectoryUnavailable."""
        ...


class IdentityLookup(Protocol):
    def oid_of(self, external: str) -> str | None: ...


def user_addresses(mail: str | None, upn: str | None, proxy_addresses: Iterable[str] | None) -> frozenset[str]:
    """Every address of a directory user, normalised. `proxyAddresses` entries carry `SMTP:` (primary) and
    `smtp:` (secondary) prefixes and may carry other types (`SIP:`, `X500:`): only SMTP ones count."""
    found: set[str] = set()
    for value in (mail, upn):
        address = normalise_address(value)
        if address:
            found.add(address)
    for entry in proxy_addresses or ():
        if isinstance(entry, str) and ":" in entry and entry.split(":", 1)[0].lower() != "smtp":
            continue
        address = normalise_address(entry)
        if address:
            found.add(address)
    return frozenset(found)


class RequesterResolver:
    """Turns the identities a request was seen as into a `Requester`, through the tenant's identity map and
    the directory (both optional: without them fewer requesters resolve, and policy raises the bar)."""

    def __init__(
        self,
        identity_map_for: Callable[[str], IdentityLookup] | None = None,
        directory: UserDirectory | None = None,
    ) -> None:
        self._map_for = identity_map_for
        self._directory = directory

    def resolve(self, tenant_id: str, seen_as: Iterable[str], display: str | None = None) -> Requester:
        seen = tuple(dict.fromkeys(s for s in seen_as if s))
        oids: list[str] = [value_of(s) for s in seen if s.startswith("entra:oid:") and GUID.match(value_of(s))]
        if self._map_for is not None:
            lookup = self._map_for(tenant_id)
            for identity in seen:
                if is_linkable(identity):
                    oid = lookup.oid_of(identity)
                    if oid:
                        oids.append(oid.lower())
        aliases: set[str] = set()
        note: str | None = None
        named: DirectoryUser | None = None  # the directory's entry for the requester's object id
        if self._directory is not None:
            try:
                if not oids:  # an address may be a user principal name the directory can resolve
                    for identity in seen:
                        address = normalise_address(value_of(identity))
                        user = self._directory.user(address) if address else None
                        if user is not None:
                            oids.append(user.oid.lower())
                            break
                for oid in dict.fromkeys(oids):
                    user = self._directory.user(oid)
                    if user is not None:
                        aliases |= user.addresses
                        named = named or user
            except DirectoryUnavailable as exc:
                note = f"the directory could not be asked ({exc})"
        unique = list(dict.fromkeys(oids))
        oid = unique[0] if unique else None
        if oid is None and note is None:
            note = "no Entra identity is linked to " + (", ".join(seen) if seen else "this request: it names no actor")
        return Requester(
            oid=oid,
            resolved=oid is not None,
            seen_as=seen,
            aliases=tuple(sorted(aliases | set(unique[1:]))),
            display=(display or None) and display[:256],
            note=None if oid else note,
            display_name=_shown(named.display_name) if named is not None and named.oid == oid else None,
            upn=_shown(named.upn) if named is not None and named.oid == oid else None,
        )


def _shown(value: str | None) -> str | None:
    """A directory name fit to show: printable, at most 256 characters, None when empty."""
    if not value:
        return None
    text = "".join(ch for ch in value if ch.isprintable()).strip()
    return text[:256] or None


def requester_claims(source: str, actor: str | None, requester_ids: Iterable[str]) -> tuple[str, ...]:
    """The identities an event was seen as: the parser's `requester_ids`, or for events sealed before they
    existed, the actor under its source's namespace (GitHub login, Azure DevOps unique name, ...)."""
    ids = tuple(requester_ids)
    if ids or not actor:
        return ids
    kind = {
        "github": ("github", "login"),
        "azure-devops": ("azure-devops", "unique" if normalise_address(actor) else "name"),
    }.get(source, (source if source in LINKABLE else "claim", "member" if source in LINKABLE else "actor"))
    found = external_id(kind[0], kind[1], actor)
    return (found,) if found else ()

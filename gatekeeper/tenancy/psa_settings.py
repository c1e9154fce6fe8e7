"""A tenant's PSA (ConnectWise PSA, Datto Autotask, HaloPSA): where its tickets live and how Gatekeeper
writes a gate's story into them (issue 15, outbound). One field of the tenant record, `psa`, validated
when the tenants file is imported, so a wrong board or a status that is not a number fails there with the
field named (`tenants[0].psa.autotask.statuses.approved: ...`), not at 2 a.m. in a gate.

Credentials are references (`env:NAME`: an app setting, in Azure a Key Vault reference), never values,
like every tenant secret (`gatekeeper.tenancy.model`). What each vendor calls its fields:

- ConnectWise: `url` is the API site (https://api-na.myconnectwise.net), `login_company` the company id
  typed at sign-in, `company` the client's company identifier on its tickets, `board` a service board
  name, statuses and priority by name (as the board defines them).
- Autotask: `url` is where zone discovery is asked (https://webservices.autotask.net/atservicesrest), or
  `zone_url` fixes the zone; `company` the companyID, `board` the queueID, statuses and priorities the
  picklist values (numbers).
- HaloPSA: `url` the instance (https://contoso.halopsa.com), `halo_tenant` the cloud tenant name if any,
  `company` the client_id, `board` the team name, statuses and priorities ids (numbers).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gatekeeper.addresses import is_internal_host, is_local_host

SECRET_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
_TEXT = re.compile(r"^[^\x00-\x1f\x7f]+$")
_NUMBER = re.compile(r"^[0-9]{1,10}$")
Vendor = Literal["connectwise", "autotask", "halopsa"]


def _ref(value: str) -> str:
    if not SECRET_REF.match(value):
        raise ValueError(
            "must be a reference like env:SETTING_NAME (an app setting holding a Key Vault reference), never the "
            "secret itself"
        )
    return value


Ref = Annotated[str, Field(max_length=130)]


def check_url(value: str) -> str:
    """An https base URL without credentials, query or fragment; http only on the loopback (local servers;
    the client refuses it unless the process allows loopback http)."""
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an absolute https URL")
    if parts.scheme == "http" and not is_local_host(parts.hostname):
        raise ValueError("must be an https URL (http only for a local server on the loopback)")
    if parts.username or parts.password or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError("must not carry credentials, a query or a fragment")
    if is_internal_address(parts.hostname):
        raise ValueError("must not point at a private, link-local or reserved address")
    return text


def is_internal_address(host: str) -> bool:
    """A host no vendor API lives at, by its spelling (private, link-local such as the metadata endpoint,
    shared, reserved, multicast, unspecified; IP literals in every form a resolver reads): the one rule of
    every credentialed client (gatekeeper.addresses), at import time. Loopback stays allowed here (local
    servers); the clients allow it only in development, and refuse a name that resolves internally when
    they connect."""
    return is_internal_host(host, allow_loopback=True)


class StatusMap(BaseModel):
    """The ticket status for each moment of a gate; a moment left out moves nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    in_progress: str | None = Field(default=None, min_length=1, max_length=50, pattern=_TEXT.pattern)
    approved: str | None = Field(default=None, min_length=1, max_length=50, pattern=_TEXT.pattern)
    rejected: str | None = Field(default=None, min_length=1, max_length=50, pattern=_TEXT.pattern)
    rolled_back: str | None = Field(default=None, min_length=1, max_length=50, pattern=_TEXT.pattern)

    def numbers_only(self, vendor: str) -> None:
        for name in ("in_progress", "approved", "rejected", "rolled_back"):
            value = getattr(self, name)
            if value is not None and not _NUMBER.match(value):
                raise ValueError(f"statuses.{name}: {vendor} statuses are picklist numbers, not {value[:50]!r}")


class _Psa(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    url: str = Field(max_length=300)
    company: str = Field(min_length=1, max_length=100, pattern=_TEXT.pattern)
    board: str = Field(min_length=1, max_length=100, pattern=_TEXT.pattern)
    statuses: StatusMap = StatusMap()
    rollback_priority: str | None = Field(default=None, min_length=1, max_length=50, pattern=_TEXT.pattern)
    # When Gatekeeper opens a change ticket for a gate that names none: never, for production environments
    # only, or for every gate request.
    open_change_ticket: Literal["never", "production", "always"] = "never"
    production_environments: tuple[str, ...] = Field(default=("production", "prod"), max_length=20)
    human_task_tickets: bool = True  # L3: open a ticket on the board for the person who carries it out

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("production_environments")
    @classmethod
    def _environments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, name in enumerate(value):
            if not name.strip() or len(name) > 100 or not _TEXT.match(name):
                raise ValueError(f"production_environments[{index}]: an environment name of 1-100 characters")
        return tuple(name.strip().lower() for name in value)

    def is_production(self, environment: str | None) -> bool:
        return (environment or "").strip().lower() in self.production_environments

    def opens_change_ticket(self, environment: str | None) -> bool:
        return self.open_change_ticket == "always" or (
            self.open_change_ticket == "production" and self.is_production(environment)
        )


class ConnectWiseCredentials(BaseModel):
    """The API member's key pair and the integration's clientId (developer.connectwise.com/ClientID)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    public_key: Ref
    private_key: Ref
    client_id: Ref

    _check = field_validator("public_key", "private_key", "client_id")(classmethod(lambda cls, v: _ref(v)))


class AutotaskCredentials(BaseModel):
    """The API-only user's user name, its secret, and the API tracking identifier (integration code)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    username: Ref
    secret: Ref
    integration_code: Ref

    _check = field_validator("username", "secret", "integration_code")(classmethod(lambda cls, v: _ref(v)))


class HaloCredentials(BaseModel):
    """The API application's client id and secret (authentication method: Client ID and Secret)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    client_id: Ref
    client_secret: Ref

    _check = field_validator("client_id", "client_secret")(classmethod(lambda cls, v: _ref(v)))


class ConnectWiseSettings(_Psa):
    vendor: Literal["connectwise"]
    login_company: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    credentials: ConnectWiseCredentials


class AutotaskSettings(_Psa):
    vendor: Literal["autotask"]
    zone_url: str | None = Field(default=None, max_length=300)  # skip zone discovery (the zone's REST base)
    new_ticket_priority: str = Field(default="2", pattern=_NUMBER.pattern)
    time_resource_id: str | None = Field(default=None, pattern=_NUMBER.pattern)  # whose time log_time books
    credentials: AutotaskCredentials

    @field_validator("zone_url")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @model_validator(mode="after")
    def _numbers(self) -> AutotaskSettings:
        if not _NUMBER.match(self.company):
            raise ValueError(f"company: the Autotask companyID is a number, not {self.company[:50]!r}")
        if not _NUMBER.match(self.board):
            raise ValueError(f"board: the Autotask queueID is a number, not {self.board[:50]!r}")
        if self.rollback_priority is not None and not _NUMBER.match(self.rollback_priority):
            raise ValueError("rollback_priority: Autotask priorities are picklist numbers")
        self.statuses.numbers_only("Autotask")
        return self


class HaloSettings(_Psa):
    vendor: Literal["halopsa"]
    halo_tenant: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    ticket_type_id: str | None = Field(default=None, pattern=_NUMBER.pattern)
    credentials: HaloCredentials

    @model_validator(mode="after")
    def _numbers(self) -> HaloSettings:
        if not _NUMBER.match(self.company):
            raise ValueError(f"company: the HaloPSA client_id is a number, not {self.company[:50]!r}")
        if self.rollback_priority is not None and not _NUMBER.match(self.rollback_priority):
            raise ValueError("rollback_priority: HaloPSA priority ids are numbers")
        self.statuses.numbers_only("HaloPSA")
        return self


PsaSettings = Annotated[ConnectWiseSettings | AutotaskSettings | HaloSettings, Field(discriminator="vendor")]
"""The `psa` field of a tenant record: one vendor's settings, chosen by `vendor`."""

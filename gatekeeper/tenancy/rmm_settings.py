"""A tenant's RMM settings (`rmm:` in the tenants file): which RMM, where its API lives, the API client, the
devices behind each watched service, and what the post-deploy watch may do there.

    rmm:
      vendor: ninjaone                  # ninjaone | dattormm
      api_url: https://eu.ninjarmm.com  # the tenant's region (Datto RMM: https://<platform>-api.centrastage.net)
      client_id: 7Yx...                 # NinjaOne client id; Datto RMM API key
      client_secret: env:GK_CONTOSO_NINJA  # a reference, like `secrets` (Key Vault reference in Azure)
      maintenance_mode: true            # NinjaOne only: maintenance for the watch window
      maintenance_features: [PATCHING, AVSCANS, TASKS]
      resolve_alerts: true              # reset / resolve the alert that caused a successful rollback
      services:
        - {name: web-shop, environments: [production, prod-*], devices: ["311", "312"]}

Validated on import, every error naming the field (`rmm.services[0].devices[1]: ...`). Secrets are never
values here, so the registry and its exports hold none. ALERTS is not a default maintenance feature: the
watch needs the RMM's alerts to judge the deployment, maintenance only keeps patching, scans and scripted
tasks from disturbing the devices while it is judged.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gatekeeper.tenancy.psa_settings import is_internal_address

RmmVendor = Literal["ninjaone", "dattormm"]
MaintenanceFeature = Literal["ALERTS", "PATCHING", "AVSCANS", "TASKS"]
SECRET_REF = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")
NINJA_DEVICE = re.compile(r"^[0-9]{1,18}$")
DATTO_UID = re.compile(r"^[0-9A-Za-z-]{1,64}$")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
NETLOC = re.compile(r"^([a-z0-9]([a-z0-9-]{0,62}\.)*[a-z0-9-]{1,63}|\[::1\])(:[0-9]{1,5})?$")
# The vendor that owns each RMM connector's device names in the policy (`rmm_devices`, alerts).
CONNECTOR_OF = {"ninjaone": "ninjarmm", "dattormm": "dattormm"}

Name = Annotated[str, Field(min_length=1, max_length=200)]


class RmmService(BaseModel):
    """A watched service: the environments whose deployments it is, and its devices in the RMM."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    name: str = Field(min_length=1, max_length=100)
    environments: tuple[Name, ...] = Field(min_length=1, max_length=20)
    devices: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = Field(min_length=1, max_length=200)

    def covers(self, environment: str) -> bool:
        return any(fnmatch.fnmatchcase(environment, pattern) for pattern in self.environments)


class RmmSettings(BaseModel):
    """One tenant's RMM (frozen; `TenantRecord.rmm`)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    vendor: RmmVendor
    api_url: str = Field(min_length=1, max_length=300)
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: str = Field(min_length=5, max_length=200)
    maintenance_mode: bool = False
    maintenance_features: tuple[MaintenanceFeature, ...] = Field(
        default=("PATCHING", "AVSCANS", "TASKS"), min_length=1, max_length=4
    )
    maintenance_margin_minutes: int = Field(default=15, ge=0, le=240)
    resolve_alerts: bool = True
    services: tuple[RmmService, ...] = Field(default=(), max_length=50)

    def __repr__(self) -> str:
        return f"RmmSettings(vendor={self.vendor!r}, api_url={self.api_url!r}, services={len(self.services)})"

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 - raises for a bad port
        except ValueError:
            raise ValueError("api_url: not a URL") from None
        host = (parts.hostname or "").lower()
        loopback_http = parts.scheme == "http" and host in LOOPBACK
        if parts.scheme != "https" and not loopback_http:
            raise ValueError("api_url: must be an https URL (the vendor's regional API host)")
        if not host or parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
            raise ValueError("api_url: only scheme and host, e.g. https://eu.ninjarmm.com")
        if not NETLOC.match(parts.netloc.lower()):
            raise ValueError("api_url: the host is not a DNS name")
        if is_internal_address(host):
            raise ValueError("api_url: must not point at a private, link-local or reserved address")
        return f"{parts.scheme}://{parts.netloc.lower()}"

    @field_validator("client_secret")
    @classmethod
    def _reference(cls, value: str) -> str:
        if not SECRET_REF.match(value):
            raise ValueError(
                "client_secret: must look like env:SETTING_NAME; put the secret itself in an app setting "
                "(a Key Vault reference in Azure)"
            )
        return value

    @field_validator("maintenance_features")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _vendor_rules(self) -> RmmSettings:
        if self.vendor == "dattormm" and self.maintenance_mode:
            raise ValueError(
                "maintenance_mode: Datto RMM's API (v2) has no device maintenance mode; set it to false "
                "(alerts are still resolved and device status read)"
            )
        pattern = NINJA_DEVICE if self.vendor == "ninjaone" else DATTO_UID
        what = "a NinjaOne device id (digits)" if self.vendor == "ninjaone" else "a Datto RMM device uid"
        names: set[str] = set()
        for i, service in enumerate(self.services):
            if service.name in names:
                raise ValueError(f"services[{i}].name: {service.name!r} is named twice")
            names.add(service.name)
            for j, device in enumerate(service.devices):
                if not pattern.match(device):
                    raise ValueError(f"services[{i}].devices[{j}]: {device[:64]!r} is not {what}")
        return self

    @property
    def connector(self) -> str:
        """The connector name the policy and the alerts use for this RMM's devices (`<connector>:device:<id>`)."""
        return CONNECTOR_OF[self.vendor]

    def devices_for(self, environment: str) -> tuple[str, ...]:
        """The devices of every service a deployment to `environment` belongs to (order kept, no repeats)."""
        found = (device for service in self.services if service.covers(environment) for device in service.devices)
        return tuple(dict.fromkeys(found))

    def secret(self, environ: Mapping[str, str]) -> str | None:
        """The client secret the reference names, read at the moment it is needed (never stored here)."""
        return environ.get(self.client_secret.removeprefix("env:")) or None

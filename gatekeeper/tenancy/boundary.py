"""Data boundaries: which tenants a deployment (a stamp) may hold.

A stamp is one deployment whose resources all sit in one geography (`GATEKEEPER_DATA_BOUNDARY`: `EU`, `US`,
or `any` for a stamp that promises no geography). Each tenant record names the boundary its data requires
(`data_boundary`, default `any`). What an MSP expects: a tenant that requires the EU must never land in a US
stamp nor in an `any` stamp (which may sit anywhere), and a tenant without a requirement fits every stamp.
So a tenant fits a stamp when it requires `any` or exactly the stamp's boundary; everything else is refused
before anything is written, naming the field.
"""

from __future__ import annotations

from gatekeeper.errors import InvalidInput
from gatekeeper.settings import DataBoundary, parse_data_boundary

__all__ = ["BoundaryMismatch", "DataBoundary", "fits", "parse_data_boundary", "require_fit"]


class BoundaryMismatch(InvalidInput):
    """A tenant requires a data boundary this deployment does not keep."""

    default_code = "data-boundary-mismatch"
    default_title = "The tenant's data boundary differs from this deployment's"

    def __str__(self) -> str:
        return self.detail


def fits(required: DataBoundary, deployment: DataBoundary) -> bool:
    """Whether a tenant requiring `required` may be held by a stamp keeping data in `deployment`."""
    return required is DataBoundary.ANY or required is deployment


def require_fit(tenant_id: str, required: DataBoundary, deployment: DataBoundary, field: str) -> None:
    """Refuse (BoundaryMismatch naming `field`) a tenant whose required boundary this stamp does not keep."""
    if not fits(required, deployment):
        raise BoundaryMismatch(
            f"tenant {tenant_id} requires data boundary {required.value}, but this deployment keeps data in "
            f"{deployment.value} (GATEKEEPER_DATA_BOUNDARY); onboard it on a stamp in {required.value}",
            field=field,
        )

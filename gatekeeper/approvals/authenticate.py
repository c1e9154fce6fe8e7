"""Who is deciding: the approval channel's trigger authenticates the caller once and hands the decision
service a `Principal`, never raw headers.

The HTTP routes use `approver_from_headers` (App Service authentication's principal or a validated Entra
bearer token). Another channel (a Teams card action, a Slack interaction) authenticates in its own way and
calls the same `DecisionService` with the person it established: a new approval channel is a trigger plus
an adapter, and the decision rules stay in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

from gatekeeper.errors import Forbidden
from gatekeeper.security.identity import TokenValidator, identify_caller
from gatekeeper.security.principal import Principal

__all__ = ["approver_from_headers", "require_person"]


def require_person(principal: Principal) -> Principal:
    """Only people decide: an application identity (app-only token) is refused with 403 not-a-person."""
    if principal.app_only:
        raise Forbidden(
            "Application identities cannot approve or reject deployments.",
            code="not-a-person",
            title="Approvals need a person",
        )
    return principal


def approver_from_headers(
    headers: Mapping[str, str], token_validator: TokenValidator | None, *, trust_easyauth: bool
) -> Principal:
    """The HTTP caller: the platform's principal (behind App Service authentication, when `trust_easyauth`)
    or a validated bearer token (401 when neither), and it must be a person (403)."""
    return require_person(identify_caller(headers, token_validator, trust_easyauth=trust_easyauth))

"""Who is calling: the platform's principal behind App Service authentication, or a validated Entra ID
bearer token. One place, so every route that needs a person identifies them the same way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gatekeeper.errors import unauthenticated
from gatekeeper.security.principal import Principal, easyauth_principal


class TokenValidator(Protocol):
    def validate(self, token: str, expected_tenant_id: str | None = None) -> Principal: ...


def identify_caller(headers: Mapping[str, str], validator: TokenValidator | None, *, trust_easyauth: bool) -> Principal:
    """The platform's principal when `trust_easyauth` (GATEKEEPER_TRUST_EASYAUTH_HEADER, from Settings) and the
    header is there, else a validated bearer token; 401 when neither."""
    principal = easyauth_principal(headers, trusted=trust_easyauth)
    if principal is not None:
        return principal
    authorization = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    # Imported here: the Entra module brings PyJWT and its crypto backends, which requests that carry no
    # bearer token (webhooks, checks, API keys) should not pay for on a cold start.
    from gatekeeper.security.entra import bearer_token

    token = bearer_token(authorization)
    if validator is None:
        raise unauthenticated("Bearer tokens are not accepted: no Entra ID audience is configured.")
    return validator.validate(token)

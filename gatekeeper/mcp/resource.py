"""The MCP endpoint as an OAuth 2.1 protected resource, and who is calling it.

The MCP authorization specification makes an HTTP MCP server an OAuth 2.1 resource server: it publishes
protected-resource metadata (RFC 9728) naming its authorization server (Entra ID here) and answers a missing
or invalid token with 401 and `WWW-Authenticate: Bearer resource_metadata="<metadata URL>"` (RFC 9728 §5.1,
RFC 6750 §3), so a client can discover where to get a token. Tokens are Entra ID access tokens for the
Gatekeeper API (`GATEKEEPER_ENTRA_AUDIENCE`) validated by `gatekeeper.security.entra`, exactly as
`POST /api/actions` validates them; the tenant is the one registered for the token's `tid`, the requester is
its object id (an agent's workload identity, or the person whose delegated token the agent holds), and the
client application (`azp`, v1 `appid`) is recorded as the agent. Only Entra tokens are accepted here: the
API key names no identity, and a GitHub workflow is not an MCP client.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gatekeeper.errors import Unauthenticated

if TYPE_CHECKING:
    from gatekeeper.actions.caller import ActionAuthenticator, ActionCaller

MCP_PATH = "/api/mcp"
METADATA_PATH = "/api/.well-known/oauth-protected-resource"
MAX_AUTHORIZATION_CHARS = 16_384
MAX_MCP_BODY = 65_536  # one JSON-RPC message with one tool call: the action API's own body limit
JSON_RPC_PARSE_ERROR = -32700
JSON_RPC_INVALID_REQUEST = -32600


def resource_url(base_url: str) -> str:
    """The MCP server's canonical URI: the resource tokens are for (RFC 8707) and the metadata's `resource`."""
    return base_url.rstrip("/") + MCP_PATH


def metadata_url(base_url: str) -> str:
    return base_url.rstrip("/") + METADATA_PATH


def protected_resource_metadata(base_url: str, authority_host: str, audiences: tuple[str, ...]) -> dict[str, Any]:
    """RFC 9728 §2 metadata. Entra ID issues tokens per tenant; `organizations` is the multi-tenant authority
    a client starts from (each customer signs in at their own tenant). Scopes are Entra's: the API's
    `.default` scope under its application ID URI."""
    authority = authority_host.rstrip("/")
    return {
        "resource": resource_url(base_url),
        "authorization_servers": [f"{authority}/organizations/v2.0"],
        "bearer_methods_supported": ["header"],
        "scopes_supported": [f"{a.rstrip('/')}/.default" for a in audiences if a.startswith("api://")],
        "resource_name": "Gatekeeper approvals for AI agents",
        "resource_documentation": "https://github.com/contoso/gatekeeper/blob/main/docs/guard-an-ai-agent.md",
    }


def challenge(base_url: str, *, invalid: bool) -> str:
    """The `WWW-Authenticate` value of a 401: the metadata URL always; `error="invalid_token"` when a token
    was presented and refused (RFC 6750 §3.1: no error code when the request had no credentials)."""
    value = f'Bearer resource_metadata="{metadata_url(base_url)}"'
    if invalid:
        value += (
            ', error="invalid_token", error_description="The access token is invalid, expired or not for this resource"'
        )
    return value


def agent_caller(authenticator: ActionAuthenticator, authorization: str | None) -> ActionCaller:
    """The calling agent from its `Authorization` header: an Entra token only, its tenant from the token,
    the client application recorded as the agent (`via: mcp`). Raises NoToken when no bearer token was
    presented, Unauthenticated when one was and is refused (the challenge differs)."""
    header = (authorization or "").strip()
    if not header.lower().startswith("bearer "):
        raise NoToken("A bearer token for the Gatekeeper API is required.")
    if len(header) > MAX_AUTHORIZATION_CHARS:
        raise Unauthenticated("The request could not be authenticated.")
    return replace(authenticator.entra_caller(header), via="mcp")


class NoToken(Unauthenticated):
    """No bearer token at all: the challenge carries no error code (RFC 6750 §3.1)."""


def refuse_body(body: bytes) -> tuple[int, dict[str, Any]] | None:
    """The product's one bounded JSON reader over an MCP POST body before the SDK parses it (depth, number
    size, duplicate keys, encoding, size): None when it is within bounds, else the HTTP status and the
    JSON-RPC error to answer with (413 for size, 400 with a parse error for the rest)."""
    from gatekeeper.json_bounded import JsonBoundsError, loads

    if len(body) > MAX_MCP_BODY:
        return 413, rpc_error(JSON_RPC_INVALID_REQUEST, f"The body is larger than {MAX_MCP_BODY} bytes.")
    try:
        message = loads(body)
    except JsonBoundsError as exc:
        return 400, rpc_error(JSON_RPC_PARSE_ERROR, f"Parse error: {exc}")
    if not isinstance(message, dict | list):
        return 400, rpc_error(JSON_RPC_INVALID_REQUEST, "Invalid request: expected a JSON-RPC message.")
    return None


def rpc_error(code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message[:300]}}

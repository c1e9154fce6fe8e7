"""`gatekeeper admin smoke-test --url URL`: what an admin runs after an install or an upgrade.

Four steps, one line each, stopping at the first failure:
1. `health`: `GET <url>/api/health` answers 200 (every dependency, the data boundary and the first tenant);
2. `event`: a gate request for the first tenant (`POST <url>/api/events`, its generic API key), for a `deploy`
   to `dev`, which the example policy automates (L0); a fresh run id per smoke test, labelled `smoke-test`;
3. `gate`: waits until the tenant's audit log holds the gate's final decision (the queue, the dispatcher, the
   orchestrator and the audit all worked) and that it was automated;
4. `audit`: verifies the tenant's whole audit log online (hash chain, Merkle tree, signed checkpoints).

The tenant is `--tenant`, else the first tenant of the settings (GATEKEEPER_BOOTSTRAP_TENANT_ID). The API key
is the value of the tenant's own `generic_api_key` reference (`env:GK_<TENANT>_API_KEY`) in the environment, or
of the variable `--api-key-env` names; it is sent to `--url` only and never printed. Steps 3 and 4 read the
tenant's tables with the admin's identity (the data roles of docs/deploy.md) or `--storage-connection`.
Exit 0 when every step passed, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gatekeeper.commands.common import UsageError, add_storage_option, registry_from_args, services_from_args

SMOKE_ENVIRONMENT = "dev"
SMOKE_ACTION = "deploy"
HTTP_TIMEOUT = 15.0
MAX_ANSWER_BYTES = 1 << 16
POLL_SECONDS = 1.0


class StepFailed(Exception):
    """A check failed: the line to print."""


def register(steps: argparse._SubParsersAction) -> None:
    smoke = steps.add_parser(
        "smoke-test",
        help="check an installed app end to end: health, a gate for the first tenant through L0, its audit",
    )
    smoke.add_argument("--url", required=True, help="the Function App's base URL, e.g. https://<app>.azurewebsites.net")
    smoke.add_argument("--tenant", help="tenant id (default: GATEKEEPER_BOOTSTRAP_TENANT_ID)")
    smoke.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the tenant's generic API key "
        "(default: the tenant's own reference, GK_<TENANT>_API_KEY)",
    )
    smoke.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the gate's decision (default 120)"
    )
    smoke.add_argument(
        "--checkpoint",
        action="store_true",
        help="sign a checkpoint before verifying (as `audit checkpoint --force`), so the test's own entries "
        "are verified under a signature, not only hash-chained",
    )
    add_storage_option(smoke)
    smoke.set_defaults(handler=run_smoke_test)


def _base_url(raw: str) -> str:
    parts = urlsplit(raw.strip())
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise UsageError(f"--url: {raw[:200]!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not loopback:
        raise UsageError("--url: must be https (plain http only for a loopback address)")
    return raw.strip().rstrip("/")


def run_smoke_test(args: argparse.Namespace) -> int:
    import requests

    base = _base_url(args.url)
    if not 1 <= args.timeout <= 3600:
        raise UsageError("--timeout: must be from 1 to 3600 seconds")
    services = services_from_args(args)
    tenant_id = (args.tenant or services.settings.bootstrap.get("GATEKEEPER_BOOTSTRAP_TENANT_ID", "")).strip()
    if not tenant_id:
        raise UsageError("--tenant: required (no GATEKEEPER_BOOTSTRAP_TENANT_ID in the settings)")
    api_key = _api_key(args, services, tenant_id)
    session = requests.Session()
    session.max_redirects = 0  # the key goes to --url's origin and nowhere else
    steps: list[tuple[str, Callable[[], str]]] = [
        ("health", lambda: _health(session, base)),
        ("event", lambda: _event(session, base, tenant_id, api_key, state)),
        ("gate", lambda: _gate(services, tenant_id, state, args.timeout)),
        ("audit", lambda: _audit(services, tenant_id, checkpoint=args.checkpoint)),
    ]
    state: dict[str, str] = {}
    for name, step in steps:
        try:
            line = step()
        except StepFailed as failed:
            print(f"{name}: FAILED: {failed}")
            return 1
        print(f"{name}: ok: {line}")
    return 0


def _api_key(args: argparse.Namespace, services: Any, tenant_id: str) -> str:
    from gatekeeper.store.tables import InvalidTenantId, validate_tenant_id
    from gatekeeper.tenancy.model import SecretPurpose

    try:
        validate_tenant_id(tenant_id)
    except InvalidTenantId as exc:
        raise UsageError(f"--tenant: {exc}") from None
    if args.api_key_env:
        value = services.settings.environ.get(args.api_key_env, "")
        if not value:
            raise UsageError(f"--api-key-env: the environment variable {args.api_key_env[:64]} is not set")
        return str(value)
    record = registry_from_args(args).get(tenant_id)
    if record is None:
        raise UsageError(f"--tenant: tenant {tenant_id} is not registered (is the first-tenant bootstrap done?)")
    references = record.secrets.get(SecretPurpose.GENERIC_API_KEY, ())
    found = services.secrets.resolve(record, SecretPurpose.GENERIC_API_KEY)
    if not found:
        names = ", ".join(r.removeprefix("env:") for r in references) or "none registered"
        raise UsageError(f"--api-key-env: the tenant's generic API key is not in the environment ({names})")
    return bytes(found[0]).decode()


def _json(response: Any) -> dict[str, Any]:
    from gatekeeper import json_bounded

    raw = response.content[:MAX_ANSWER_BYTES]
    try:
        document = json_bounded.loads(raw)
    except (json_bounded.JsonBoundsError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    member = body.get(name)
    return member if isinstance(member, dict) else {}


def _health(session: Any, base: str) -> str:
    import requests

    try:
        response = session.get(f"{base}/api/health", timeout=HTTP_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        raise StepFailed(f"{base}/api/health did not answer ({type(exc).__name__})") from None
    body = _json(response)
    dependencies = _object(body, "dependencies")
    summary = ", ".join(
        f"{name} {info.get('status')}" + (f" ({info['reason']})" if info.get("reason") else "")
        for name, info in sorted(dependencies.items())
        if isinstance(info, dict)
    )
    bootstrap = _object(body, "bootstrap")
    described = f"{summary}; bootstrap {bootstrap.get('status')}; data boundary {body.get('dataBoundary')}"
    if response.status_code != 200:
        setting = f" ({bootstrap['setting']})" if bootstrap.get("setting") else ""
        raise StepFailed(f"{response.status_code}: {described}{setting}")
    return described


def _event(session: Any, base: str, tenant_id: str, api_key: str, state: dict[str, str]) -> str:
    import requests

    run_id = f"smoke-{uuid.uuid4().hex[:16]}"
    body = {
        "kind": "gate_request",
        "action": SMOKE_ACTION,
        "environment": SMOKE_ENVIRONMENT,
        "runId": run_id,
        "actor": "gatekeeper-smoke-test",
        "labels": ["smoke-test"],
    }
    headers = {"X-Gatekeeper-Tenant": tenant_id, "x-functions-key": api_key}
    try:
        response = session.post(
            f"{base}/api/events", json=body, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise StepFailed(f"{base}/api/events did not answer ({type(exc).__name__})") from None
    answer = _json(response)
    instance = answer.get("instanceId")
    if response.status_code != 202 or answer.get("status") != "accepted" or not isinstance(instance, str):
        title = answer.get("title") or answer.get("reason") or "unexpected answer"
        raise StepFailed(f"{response.status_code}: {str(title)[:200]}")
    state["instance"] = instance
    return f"accepted for tenant {tenant_id} (instance {instance})"


def _gate(services: Any, tenant_id: str, state: dict[str, str], timeout: float) -> str:
    from azure.core.exceptions import AzureError

    instance = state["instance"]
    started = time.monotonic()
    try:
        log = services.audit_for(tenant_id)
        while True:
            found = next(
                (
                    entry
                    for entry in log.entries(_tail_start(log))
                    if entry["instance_id"] == instance
                    and entry["kind"] == "decision"
                    and log.open_data(entry).get("final")  # only this gate's entries are opened
                ),
                None,
            )
            if found is not None:
                decision = log.open_data(found)
                break
            if time.monotonic() - started > timeout:
                raise StepFailed(
                    f"no final decision for {instance} within {timeout:.0f} s (is the queue trigger running?)"
                )
            time.sleep(POLL_SECONDS)
    except (AzureError, ValueError, RuntimeError) as exc:
        raise StepFailed(f"the tenant's audit log could not be read ({type(exc).__name__})") from None
    level, status = decision.get("level"), decision.get("status")
    if level != "L0" or status != "approved":
        raise StepFailed(f"the gate was {status} at {level}, not automated (L0): check the tenant's policy")
    return f"{level} {status} in {time.monotonic() - started:.1f} s"


def _tail_start(log: Any) -> int:
    """Where to start reading: the last 500 entries (a busy tenant's log is not read from its start each poll)."""
    return max(0, log.head().size - 500)


def _audit(services: Any, tenant_id: str, *, checkpoint: bool) -> str:
    from azure.core.exceptions import AzureError

    try:
        log = services.audit_for(tenant_id)
        if checkpoint:
            log.checkpoint(force=True)
        result = log.check()
    except (AzureError, ValueError, RuntimeError) as exc:
        raise StepFailed(f"the tenant's audit log could not be verified ({type(exc).__name__})") from None
    if not result.ok:
        raise StepFailed(result.summary())
    if result.unsigned_tail:
        return (
            f"{result.summary()}; {result.unsigned_tail} later entries hash-chained to the head, "
            "not yet under a signed checkpoint"
        )
    return result.summary()

"""Ingestion routes (public contract): GitHub webhooks, Azure DevOps checks and service hooks, any CI.

Each route authenticates, parses and queues the event; the answer (202) comes before any slow work.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from functions.http import handle, incoming, services

bp = df.Blueprint()


@bp.function_name("github_webhook")
@bp.route(route="github/webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def github_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """GitHub App or repository webhook; authenticated by the tenant's X-Hub-Signature-256 secret."""
    return handle(req, lambda: (202, services().ingestion.github(incoming(req)).body()))


@bp.function_name("azure_devops_check")
@bp.route(route="azure-devops/checks", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def azure_devops_check(req: func.HttpRequest) -> func.HttpResponse:
    """The "Invoke Azure Function" check in callback mode: acknowledged with 200 at once, completed later."""
    return handle(req, lambda: (200, services().ingestion.azure_devops_check(incoming(req)).body()))


@bp.function_name("azure_devops_service_hook")
@bp.route(route="azure-devops/service-hooks", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def azure_devops_service_hook(req: func.HttpRequest) -> func.HttpResponse:
    """Service hook subscriptions (run/stage state changed, build completed); Basic auth per tenant."""
    return handle(req, lambda: (202, services().ingestion.azure_devops_service_hook(incoming(req)).body()))


@bp.function_name("generic_events")
@bp.route(route="events", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def generic_events(req: func.HttpRequest) -> func.HttpResponse:
    """The generic JSON API for any CI (docs/openapi/events.yaml): tenant API key or Entra bearer token."""
    return handle(req, lambda: (202, services().ingestion.generic(incoming(req)).body()))

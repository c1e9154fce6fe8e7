"""Outbound integrations: pipeline callbacks (GitHub App, Azure DevOps, signed webhooks) and notifications
(Microsoft Graph: Teams activity feed and mail, or a local outbox).

Every adapter returns a result instead of raising for remote failures, so the orchestrator's activity can
audit and alert on a callback that finally failed; no adapter ever logs or returns a secret.
"""

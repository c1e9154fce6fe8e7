"""The Teams app package (`python -m gatekeeper package teams-app`): manifest, icon checks, deterministic zip."""

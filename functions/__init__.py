"""Azure Functions triggers: thin adapters that authenticate, parse and hand over to gatekeeper/."""

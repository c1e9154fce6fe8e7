"""Local development tools: Azurite, the local key and outbox, the local orchestration runner."""

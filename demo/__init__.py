"""The local demo (`make demo`): development tooling, not deployed (see .funcignore)."""

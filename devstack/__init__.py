"""Development tooling, never deployed (`.funcignore`): the Azurite starter, local servers speaking each
remote API's wire format (one module per fake on the shared `devstack.server.LocalServer` base, plus the
Key Vault and Entra issuer stand-ins), the local orchestration runner and the whole gate on one machine
(`devstack.gates`). Product code (gatekeeper/, functions/, orchestrators/) never imports this package;
tests/architecture/test_layers.py enforces it."""

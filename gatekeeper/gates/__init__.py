"""Gates: the state a gate keeps in its tenant's tables and the steps its orchestrators delegate.

`model` holds the small documents that travel through orchestration histories, `store` the Gates table
and the shared gate index, `effects` the interfaces to policy, audit, notifications and pipeline callbacks,
and one module per step: `evaluate`, `approval`, `callback`, `outcome` (with `common`). Steps take the
process's `gatekeeper.services.Services` and a typed contract from `gatekeeper.contracts.gate`.
"""

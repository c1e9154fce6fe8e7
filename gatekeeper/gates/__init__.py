"""Gates: the state a gate keeps in its tenant's tables, the steps its orchestrators delegate, and the
decision service the approval channels call.

`store` holds the Gates table and the shared gate index, `effects` the interfaces to policy, audit,
notifications and pipeline callbacks, `needs` what every step needs from the process (a port that
`gatekeeper.services.Services` satisfies), `decisions` the approval decisions, and one module per step:
`evaluate`, `approval`, `callback`, `outcome` (with `common`). Each step takes a typed contract from
`gatekeeper.contracts.gate`; the documents that travel through orchestration histories live there too.
"""

"""Gates: the state a gate keeps in its tenant's tables and the activity work its orchestrators delegate.

`model` holds the small documents that travel through orchestration histories, `store` the Gates table
and the shared gate index, `effects` the interfaces to policy, audit, notifications and pipeline callbacks,
`services` the registry activities resolve those through, and `activities` the activity implementations.
"""

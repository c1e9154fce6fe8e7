"""Recommendations at L2 and learning from human overrides (issue 16, sections 2 and 3).

Pure, typed decisions over a tenant's own audit history: `features` (what a gate looks like), `history`
(gates and their outcomes read back from the audit log), `model` (a per-feature Bayesian rate model with
Laplace shrinkage, combined naive-Bayes style and calibrated by leave-one-out Brier score), `overrides`
(what counts as a person overriding the system) and `proposals` (`policy recommend`). I/O sits in `store`
(the versioned model per tenant and the cached recommender). Recommendations never change a gate's level.
"""

"""Post-deploy watch and rollback: the decision core (decide), its state (store), the probes, the rollback
runs (targets) and the activities' steps (steps)."""

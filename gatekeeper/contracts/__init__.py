"""Typed inputs and outputs of every orchestration activity, one module per flow.

Orchestrators build these models, serialise them to JSON at the call (`model_dump(mode="json")`) and
validate what comes back; activities validate their input the same way. Histories carry ids, levels and
decisions only: events, evidence and comments stay in the tenant's tables.
"""

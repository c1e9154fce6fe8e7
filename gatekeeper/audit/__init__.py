"""gatekeeper.audit"""

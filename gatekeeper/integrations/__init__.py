"""gatekeeper.integrations"""

"""gatekeeper.store"""

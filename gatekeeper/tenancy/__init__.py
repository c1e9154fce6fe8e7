"""gatekeeper.tenancy"""

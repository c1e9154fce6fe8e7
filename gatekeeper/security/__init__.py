"""gatekeeper.security"""

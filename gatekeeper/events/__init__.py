"""gatekeeper.events"""

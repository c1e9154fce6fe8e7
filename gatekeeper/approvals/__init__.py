"""gatekeeper.approvals"""

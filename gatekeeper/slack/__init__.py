"""Approvals in Slack: one more channel over the same view (`ApprovalView`) and decision service."""

"""Gatekeeper: the product's own library, importable without azure.functions."""

__version__ = "0.1.0"

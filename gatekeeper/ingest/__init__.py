"""Ingestion: authenticate, parse and hand over incoming pipeline and connector events."""

"""Marketplace packaging and the infrastructure checks that can run without the Bicep CLI or ARM-TTK.

The rules re-implement the ARM-TTK tests that matter for this offer on a small template model built from
either parsed Bicep (pycep) or a compiled ARM template, so the same rule guards `make test` and the
release packaging.
"""

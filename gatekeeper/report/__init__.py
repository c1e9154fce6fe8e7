"""`python -m gatekeeper report`: a tenant's gates, approvals, overrides, DORA and calibration, from its audit log.

`metrics` computes every figure from audit entries (pure, typed); `render` turns the figures into one
self-contained HTML page (charts drawn here with matplotlib's SVG backend, so nothing loads at view time);
the command (`gatekeeper/commands/report.py`) reads the log and writes both files. Which record each figure
comes from is in docs/telemetry.md, "The report".
"""

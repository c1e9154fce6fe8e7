"""The log lines a callback adapter wrote on its own logger, for tests that pin them (level, message)."""

from __future__ import annotations

import pytest


def adapter_lines(caplog: pytest.LogCaptureFixture, logger: str, module_file: str) -> list[tuple[int, str]]:
    """(level, message) of every record on `logger`; each must point at the adapter's module, not at the
    shared helper that wrote it (`integrations.results.callback_result` logs with `stacklevel`)."""
    records = [r for r in caplog.records if r.name == logger]
    assert {r.filename for r in records} <= {module_file}, [r.filename for r in records]
    return [(r.levelno, r.getMessage()) for r in records]

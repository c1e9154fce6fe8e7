"""The parameters a Bicep file declares, read from its text without the Bicep CLI.

Only `param` lines and their decorators are needed to check a compiled template and createUiDefinition
against the Bicep source, so this small reader keeps that check inside the app's own environment (pycep
lives in the separate infra environment). tests/infra compare it with pycep's full parse.
"""

from __future__ import annotations

import re

from gatekeeper.marketplace.template_model import Parameter

PARAM_LINE = re.compile(r"^param\s+(?P<name>\w+)\s+(?P<type>[\w.]+(?:\[\])?)\s*(?P<default>=\s*(?P<value>.+))?$")
DECORATOR = re.compile(r"^@(?P<name>\w+)\s*\(")


def read_parameters(text: str) -> dict[str, Parameter]:
    """name -> Parameter for every top-level `param` declaration, in order of declaration."""
    parameters: dict[str, Parameter] = {}
    pending: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not raw.startswith((" ", "\t")) and line.startswith("@"):
            match = DECORATOR.match(line)
            if match:
                pending.append(match.group("name"))
            continue
        match = PARAM_LINE.match(line) if not raw.startswith((" ", "\t")) else None
        if match:
            value = match.group("value")
            default = value.strip().strip("'") if value is not None else None
            parameters[match.group("name")] = Parameter(
                match.group("name"), match.group("type"), "secure" in pending, value is not None, default
            )
            pending = []
        elif line and not line.startswith("//") and not raw.startswith((" ", "\t", "]", ")")):
            pending = []
    return parameters

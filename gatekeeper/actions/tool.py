"""The tool an action's command runs: the one word of a command that analytics may show (report, telemetry).

Why a rule of its own: the command is the caller's text and its arguments may hold anything (paths, hosts, a
secret passed on the command line). Counting requests and denials per tool needs the program or the MCP tool
name and nothing more, so this takes exactly that word and refuses whatever does not look like a name:
- mcp-guard's commands (`mcp-tool <tool> <json>`, `gatekeeper.mcp.guard_policy.guarded_command`): the tool;
- any other command: its first word after leading `NAME=value` assignments (shell-split; an argv list is
  stored shell-quoted), as a file name when it is a path (`/usr/bin/kubectl` -> `kubectl`);
- the word must be 1-64 of `A-Z a-z 0-9 . _ + -` starting with a letter or digit, else `(other)`; a word
  with `:` (a URL, a drive letter) or `@` is never a name.
"""

from __future__ import annotations

import re
import shlex

MCP_PREFIX = "mcp-tool"  # gatekeeper.mcp.guard_policy.COMMAND_PREFIX (not imported: that module loads pydantic models)
OTHER_TOOL = "(other)"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*", re.S)
MAX_SCANNED = 4096  # characters of the command looked at: the head is at its start
MAX_WORDS = 32  # leading assignments skipped at most


def command_tool(command: object) -> str:
    """The tool name of a command (see the module docstring), or OTHER_TOOL."""
    if not isinstance(command, str):
        return OTHER_TOOL
    text = command[:MAX_SCANNED]
    if text.startswith(MCP_PREFIX + " "):
        parts = text.split(" ", 2)
        return _name(parts[1] if len(parts) > 1 else "")
    return _name(_head(text))


def _head(text: str) -> str:
    lexer = shlex.shlex(text, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        for _ in range(MAX_WORDS):
            word = lexer.get_token()
            if word is None or word == lexer.eof:
                return ""
            if not ASSIGNMENT.fullmatch(word):
                return word
    except ValueError:  # an unbalanced quote: the plain first word that is not an assignment
        for word in text.split()[:MAX_WORDS]:
            if not ASSIGNMENT.fullmatch(word):
                return word
    return ""


def _name(word: str) -> str:
    if ":" in word or "@" in word:
        return OTHER_TOOL
    if "/" in word:
        word = word.rstrip("/").rsplit("/", 1)[-1]
    return word if NAME.fullmatch(word) else OTHER_TOOL

"""Text from outside (gateway answers, ids, object stores) made safe to show.

Whatever reaches workflow history, a log line or the terminal goes through
printable(): control characters are escaped (a newline in a gateway id cannot
forge a log line, an escape sequence cannot drive the terminal) and the length
is capped (a gateway's 1 MB error page cannot fill history or jam a workflow
against Temporal's payload limits).
"""

from __future__ import annotations

import re

MAX_ERROR_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """text with control characters escaped, whatever its length."""
    return _CONTROL.sub(_escape, text)


def printable(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """text with control characters escaped, cut to limit characters with a marker."""
    # Escaping only lengthens: a prefix of a few times the limit is all that can show.
    escaped = _CONTROL.sub(_escape, text[: limit * 4 + 1])
    if len(escaped) > limit:
        return escaped[:limit] + f"… [cut at {limit} characters]"
    return escaped

"""What a batch or file id may look like, from a caller or from a gateway.

Ids go into URL paths sent with the gateway key, into file names, logs and the
terminal: an id that is not an id (a `../files/x/content`, a newline, 100 kB)
is refused wherever one enters. The shape is tolerant of every real one:
OpenAI's `batch_…`/`file-…`, Azure's `batch_<uuid>`/`file-<hex>`, LiteLLM's
unpadded url-safe base64 managed ids (a few hundred characters).
"""

from __future__ import annotations

import re

MAX_ID_CHARS = 512
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+\-]*")
ID_SHAPE = (
    f"letters, digits and _ - . : = + (starting with a letter or digit, no '..'), "
    f"up to {MAX_ID_CHARS} characters"
)


def id_problem(value: str) -> str | None:
    """Why value is not an id, or None when it is one."""
    if len(value) > MAX_ID_CHARS:
        return f"is {len(value)} characters long; an id has {ID_SHAPE}"
    if not _ID.fullmatch(value) or ".." in value:
        return f"is not an id ({ID_SHAPE})"
    return None


def checked_id(value: str, what: str) -> str:
    """value when it is an id; ValueError naming what it was meant to be otherwise."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"{what} {quoted(value)} {problem}")
    return value


def quoted(value: str, limit: int = 80) -> str:
    """value quoted as repr() quotes it (control characters escaped), cut at limit characters."""
    shown = repr(value[:limit])
    return shown + f"… ({len(value)} characters)" if len(value) > limit else shown

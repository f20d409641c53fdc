"""A refusal for the enqueued-token quota, as each provider words it, and the limit it states.

Azure fails a create at once (a 400, or a batch born ``failed``); OpenAI answers
``validating`` and fails the batch at the end of validation; a gateway may
answer 429. The code is ``token_limit_exceeded`` where it is given, but not
every path gives it, so the providers' own words decide too:

- OpenAI: "Enqueued token limit reached for gpt-4o-mini in organization org-…
  Limit: 2,000,000 enqueued tokens. Please try again once some in_progress
  batches have been completed."
- Azure: "The number of enqueued tokens has surpassed the configured limit of
  3000 for the deployment 'gpt-4o-mini'. …"

A rate limit ("tokens per min") is not a quota refusal: it names no enqueued tokens.
Pure and import-free beyond the standard library, so the workflow can use it.
"""

from __future__ import annotations

import re

from contracts.names import QUOTA_REFUSAL_CODE

_WORDING = re.compile(r"enqueued[\s_-]+tokens?\b", re.IGNORECASE)
_LIMITS = (
    re.compile(r"limit:\s*(?P<n>\d[\d,_ ]*)\s*enqueued", re.IGNORECASE),
    re.compile(r"limit of\s*(?P<n>\d[\d,_]*)", re.IGNORECASE),
    re.compile(r"(?P<n>\d[\d,_]*)\s*enqueued[\s_-]+tokens", re.IGNORECASE),
)


def is_quota_refusal(code: str | None, message: str | None) -> bool:
    """Whether an error (its code and its words) refuses a batch for the enqueued-token quota."""
    if code is not None and code.strip().lower() == QUOTA_REFUSAL_CODE:
        return True
    return message is not None and _WORDING.search(message) is not None


def is_quota_refusal_text(error: str) -> bool:
    """The same, for an error described as ``[code] message`` (BatchSnapshot.errors)."""
    return f"[{QUOTA_REFUSAL_CODE}]" in error.lower() or is_quota_refusal(None, error)


def stated_limit(message: str) -> int | None:
    """The enqueued-token limit a refusal states, if it states one."""
    if _WORDING.search(message) is None:
        return None
    for pattern in _LIMITS:
        found = pattern.search(message)
        if found is not None:
            digits = re.sub(r"[^\d]", "", found["n"])
            if digits:
                return int(digits)
    return None

"""The one masking rule for secrets in text the worker writes: error messages and log lines.

The secrets themselves come from one place, ``GatewaySettings.secret_values()``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from functools import lru_cache
from urllib.parse import quote

REDACTED = "[redacted]"


def redact(text: str, secrets: Collection[str]) -> str:
    """text with every secret, and the credentials of every URL, replaced by REDACTED.

    Every secret is masked, however short. A minimum length (masking only values
    of 8 or 4 characters and more) leaks exactly the short keys it skips, and a
    short key is the easiest to guess or reuse. The price is that a short header
    value that is no credential (X-Tenant: acme) is masked too wherever it occurs
    in a message: an over-masked message is a nuisance, a leaked key an incident.

    Each secret is also masked in the forms messages quote values in: escaped as
    by repr() and JSON, and percent-encoded as in a URL. One marker for every
    secret, whatever its length, so the mask tells nothing about the key. One
    pass, longest match first, so a secret that contains another is masked
    whole and a secret that happens to spell part of the marker cannot mangle it.
    """
    text = _URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", text)
    pattern = _pattern(frozenset(secrets))
    return pattern.sub(REDACTED, text) if pattern is not None else text


# user:password@ (or a token@) in any URL a message quotes: stripped whatever the
# secret list holds, so a credential put in GATEWAY_URL or AWS_ENDPOINT_URL never shows.
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#]+@")


def _quoted_forms(secret: str) -> set[str]:
    return {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], quote(secret, safe="")}


@lru_cache(maxsize=16)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    forms = {form for secret in secrets if secret for form in _quoted_forms(secret)}
    if not forms:
        return None
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))

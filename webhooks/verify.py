"""Standard Webhooks verification, with the scheme's reference implementation.

``standardwebhooks`` (PyPI, by the authors of the spec) is chosen over the
openai SDK's ``client.webhooks.unwrap``: it is the scheme itself in one small
module with no dependencies, it serves OpenAI and Azure OpenAI alike (both sign
the Standard Webhooks way), and it keeps the receiver's runtime free of an API
client it would not otherwise use. It compares in constant time, accepts a
header with several signatures (a provider rotating its secret), and refuses
timestamps more than 5 minutes old or ahead. We add the rotation on our side
(several secrets, any one verifies) and turn each of its failures, malformed
headers included, into one refusal that names no secret.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Refused(Exception):
    """An event that must have no effect; ``status`` is the answer (400 or 401)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def parse_secrets(raw: str) -> list[str]:
    """WEBHOOK_SECRET: one whsec_ secret, or several comma-separated during a rotation."""
    secrets = [part.strip() for part in raw.split(",") if part.strip()]
    if not secrets:
        raise ValueError("WEBHOOK_SECRET is empty: set the endpoint's whsec_ signing secret")
    for position, secret in enumerate(secrets, start=1):
        try:
            Webhook(secret)
        except Exception:
            raise ValueError(
                f"WEBHOOK_SECRET: secret {position} of {len(secrets)} is not a whsec_ "
                "(base64) signing secret"
            ) from None
    return secrets


class EventVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        self._hooks = [Webhook(secret) for secret in secrets]

    def verify(self, body: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        """The event, if one of the secrets signed it within the last 5 minutes."""
        wanted = {
            name: headers[name]
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
            if name in headers
        }
        if len(wanted) < 3:
            raise Refused(400, "missing webhook-id, webhook-timestamp or webhook-signature")
        stale = False
        for hook in self._hooks:
            try:
                hook.verify(body, wanted, json_parse=False)
            except WebhookVerificationError as exc:
                stale = stale or "timestamp" in str(exc) or "Headers" in str(exc)
                continue
            except ValueError:
                # A malformed signature header or a body that is not UTF-8.
                raise Refused(400, "malformed signature header or body") from None
            return _event(body)
        if stale:
            raise Refused(401, "timestamp missing, too old or too new")
        raise Refused(401, "no valid signature")


def _event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(event, dict):
        raise Refused(400, "the body is not a JSON object")
    return event

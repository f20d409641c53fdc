"""Quota refusals recognised by code and by each provider's own words, and the limit stated."""

from __future__ import annotations

import pytest

from contracts.quota import is_quota_refusal, is_quota_refusal_text, stated_limit

OPENAI = (
    "Enqueued token limit reached for gpt-4o-mini in organization org-snq6hvc. Limit: "
    "2,000,000 enqueued tokens. Please try again once some in_progress batches have been "
    "completed."
)
AZURE = (
    "The number of enqueued tokens has surpassed the configured limit of 240 for the "
    "deployment 'gpt-4o-mini'. Please either increase the limit or try again once the current "
    "jobs have finished."
)
RATE_LIMIT = (
    "Rate limit reached for gpt-4o-mini in organization org-x on tokens per min (TPM): "
    "Limit 200000, Used 199000, Requested 2000."
)


@pytest.mark.parametrize(
    ("code", "message", "refusal"),
    [
        ("token_limit_exceeded", "anything", True),
        ("TOKEN_LIMIT_EXCEEDED", None, True),
        (None, OPENAI, True),
        ("invalid_request_error", AZURE, True),
        ("rate_limit_exceeded", RATE_LIMIT, False),
        (None, "The input file is malformed.", False),
        (None, None, False),
    ],
)
def test_a_refusal_is_known_by_its_code_or_its_words(
    code: str | None, message: str | None, refusal: bool
) -> None:
    assert is_quota_refusal(code, message) is refusal


def test_a_described_batch_error_is_known_too() -> None:
    assert is_quota_refusal_text("[token_limit_exceeded] whatever the words")
    assert is_quota_refusal_text(f"[invalid_request] {OPENAI}")
    assert not is_quota_refusal_text("line 3: [invalid_request] model not found")


@pytest.mark.parametrize(
    ("message", "limit"),
    [
        (OPENAI, 2_000_000),
        (AZURE, 240),
        ("Limit: 240 enqueued tokens", 240),
        ("Enqueued token limit reached for gpt-4o. Please try again later.", None),
        (RATE_LIMIT, None),
    ],
)
def test_the_limit_a_refusal_states(message: str, limit: int | None) -> None:
    assert stated_limit(message) == limit

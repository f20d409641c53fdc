"""Translates our exceptions into Temporal's: retryable or not, and when to try again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.exceptions import ApplicationError

from activities.results import ResultIntegrityError
from activities.validation import InputChanged, InputProblems
from contracts.names import (
    FAILURE_INPUT_CHANGED,
    FAILURE_INVALID_INPUT,
    FAILURE_INVALID_LOCATION,
    FAILURE_PERMISSION_DENIED,
    FAILURE_RESULT_INTEGRITY,
    FAILURE_STORAGE_UNAVAILABLE,
)
from contracts.text import printable
from gateway.errors import GatewayError
from storage import AccessDenied, LocationError, StorageUnavailable

# A failure's message goes into history: bounded whatever the gateway said.
MAX_FAILURE_CHARS = 1000


def gateway_failure(exc: GatewayError) -> ApplicationError:
    delay = timedelta(seconds=exc.retry_after) if exc.retry_after is not None else None
    return ApplicationError(
        printable(exc.message, MAX_FAILURE_CHARS),
        type=type(exc).__name__,
        non_retryable=not exc.retryable,
        next_retry_delay=delay,
    )


@asynccontextmanager
async def temporal_failures() -> AsyncIterator[None]:
    """Wrap an activity body so each failure reaches Temporal with the right retry intent."""
    try:
        yield
    except GatewayError as exc:
        # Not chained: Temporal records the cause chain, unredacted, in history.
        raise gateway_failure(exc) from None
    except InputProblems as exc:
        raise ApplicationError(str(exc), type=FAILURE_INVALID_INPUT, non_retryable=True) from exc
    except InputChanged as exc:
        raise ApplicationError(str(exc), type=FAILURE_INPUT_CHANGED, non_retryable=True) from exc
    except AccessDenied as exc:
        # Retrying cannot grant access; the store's own error may quote a signed URL.
        raise ApplicationError(
            printable(str(exc), MAX_FAILURE_CHARS),
            type=FAILURE_PERMISSION_DENIED,
            non_retryable=True,
        ) from None
    except LocationError as exc:
        # The location is the caller's: escaped and cut like any text from outside.
        raise ApplicationError(
            printable(str(exc), MAX_FAILURE_CHARS),
            type=FAILURE_INVALID_LOCATION,
            non_retryable=True,
        ) from None
    except StorageUnavailable as exc:
        raise ApplicationError(
            printable(str(exc), MAX_FAILURE_CHARS), type=FAILURE_STORAGE_UNAVAILABLE
        ) from None
    except ResultIntegrityError as exc:
        raise ApplicationError(str(exc), type=FAILURE_RESULT_INTEGRITY, non_retryable=True) from exc
    except RecursionError:
        # Data nested past any parser's depth comes back the same on every try.
        raise ApplicationError(
            "data nested too deeply to read (a hostile or broken file or answer)",
            type=FAILURE_INVALID_INPUT,
            non_retryable=True,
        ) from None
    except PermissionError as exc:
        # Retrying cannot grant access: say where, once.
        raise ApplicationError(
            f"permission denied: {exc.filename or exc}; the worker cannot read or write there",
            type=FAILURE_PERMISSION_DENIED,
            non_retryable=True,
        ) from None

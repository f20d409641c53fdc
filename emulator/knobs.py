"""Every behaviour switch of the emulator, in one pydantic model.

The same model is filled from three places, later ones winning: field defaults,
``EMULATOR_*`` environment variables, command-line flags; at run time
``PATCH /_emulator/knobs`` merges a partial object into it. Knobs live in memory
only: a restarted emulator starts again from its flags and environment, while a
batch keeps the outcome it was forced into (that is stored with the batch).
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "EMULATOR_"

ForceOutcome = Literal[
    "none", "failed", "expired", "stuck_validating", "stuck_finalizing", "token_limit_exceeded"
]
EmulatorDialect = Literal["openai", "azure"]
EnqueuedTokenRefusal = Literal["failed_batch", "http_429", "late_failed"]
UnsupportedRoute = Literal["list_files", "list_batches", "cancel_batch", "delete_file"]
AmbiguousCreateAnswer = Literal["drop", "502"]
RefusedReadAnswer = Literal["401", "403", "no_route"]

MIB = 1024 * 1024


class Knobs(BaseModel):
    """The switches; durations are emulated seconds (see ``time_scale``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    time_scale: float = Field(
        1.0, gt=0, description="Emulated seconds per real second (3600: an hour a second)."
    )
    validating_seconds: float = Field(1.0, ge=0, description="Time a batch spends validating.")
    finalizing_seconds: float = Field(1.0, ge=0, description="Time a batch spends finalizing.")
    cancelling_seconds: float = Field(1.0, ge=0, description="Time a batch spends cancelling.")
    line_latency_seconds: float = Field(
        0.05, ge=0, description="Time one line takes on the built-in model."
    )
    batch_concurrency: int = Field(
        8, ge=1, description="Lines of one batch the built-in model runs at once."
    )
    error_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of API calls answered with an error status."
    )
    error_statuses: list[int] = Field(
        default_factory=lambda: [500, 502, 503, 429],
        min_length=1,
        description="Statuses error_rate picks from, uniformly.",
    )
    retry_after_seconds: float = Field(
        1.0, ge=0, description="Retry-After sent with injected 429 and 503 answers."
    )
    drop_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of API calls whose connection is closed unanswered."
    )
    response_delay_seconds: float = Field(
        0.0,
        ge=0,
        description="Real seconds each API answer is held after the work is done "
        "(the window in which a client dies having acted but not heard).",
    )
    line_failure_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of lines that finish with 429 or 500 (hash of seed, custom_id).",
    )
    seed: int = Field(0, description="Seed of line failures and of the fault dice.")
    force_outcome: ForceOutcome = Field("none", description="Outcome forced on new batches.")
    enqueued_token_limit: int | None = Field(
        None,
        ge=1,
        description="Refuse a new batch (token_limit_exceeded) while the input tokens of "
        "unfinished batches plus its own exceed this, as Azure's enqueued-token quota does.",
    )
    enqueued_token_refusal: EnqueuedTokenRefusal = Field(
        "failed_batch",
        description="How a refusal looks: failed_batch (create answers 200 with a batch "
        "already failed, errors.data[0].code token_limit_exceeded), http_429, or late_failed "
        "(OpenAI's: the create answers validating, and the batch fails at the end of "
        "validation with token_limit_exceeded).",
    )
    dialect: EmulatorDialect = Field("openai", description="openai, or azure with its quirks.")
    unsupported_routes: list[UnsupportedRoute] = Field(
        default_factory=list,
        description="Routes answered 404 as Kong answers a route it has no match for "
        "(list_files, list_batches, cancel_batch, delete_file).",
    )
    auth_header: str | None = Field(
        None, description="Header that must carry auth_key (apikey, Authorization, api-key)."
    )
    auth_key: str | None = Field(
        None, description="Key required in auth_header; Authorization expects 'Bearer <key>'."
    )
    upstream_url: str | None = Field(
        None, description="OpenAI-compatible base URL (ending in /v1) that runs the lines."
    )
    upstream_concurrency: int = Field(8, ge=1, description="Lines in flight to the upstream.")
    upstream_api_key: str | None = Field(
        None, description="Bearer key sent to the upstream, if it needs one."
    )
    upstream_model: str | None = Field(
        None, description="Model name that replaces each line's model before forwarding."
    )
    upstream_timeout_seconds: float = Field(
        600.0, gt=0, description="Real seconds one upstream request may take."
    )
    max_requests_per_file: int = Field(
        50_000, ge=1, description="Lines one batch input file may hold."
    )
    max_file_bytes: int = Field(200 * MIB, ge=1, description="Largest upload accepted.")
    file_processing_seconds: float = Field(
        0.0,
        ge=0,
        description="Time a new upload stays 'pending' before it is 'processed' (or 'error'); "
        "a batch on a file not yet processed is refused as Azure refuses it.",
    )
    file_processing_error: str | None = Field(
        None,
        description="When set, new uploads end processing in 'error' with this reason "
        "in status_details.",
    )
    ambiguous_creates: int = Field(
        0,
        ge=0,
        description="The next N POST /batches make their batch, then do not answer it "
        "(see ambiguous_create_answer); counts down to 0.",
    )
    ambiguous_create_answer: AmbiguousCreateAnswer = Field(
        "drop",
        description="How an ambiguous create ends: 'drop' closes the connection unanswered, "
        "'502' answers a gateway error.",
    )

    late_creates: int = Field(
        0,
        ge=0,
        description="The next N POST /batches answer 504 at once and make their batch "
        "late_create_seconds later, as a provider still making it when the gateway timed "
        "out; counts down to 0.",
    )
    late_create_seconds: float = Field(
        5.0, ge=0, description="Real seconds after its 504 a late create's batch appears."
    )
    drop_metadata: bool = Field(
        False,
        description="New batches keep no metadata (answered and listed without it), as a "
        "gateway that does not forward it.",
    )
    refused_batch_reads: int = Field(
        0,
        ge=0,
        description="The next N GET /batches/{id} are refused (see refused_batch_read_answer), "
        "as a gateway node that does not know the key yet, or Kong reloading, answers; "
        "counts down to 0.",
    )
    refused_batch_read_answer: RefusedReadAnswer = Field(
        "401",
        description="How a refused read is answered: '401' invalid_api_key, '403', or "
        "'no_route' (Kong's 404 'no Route matched with those values').",
    )
    webhook_url: str | None = Field(
        None, description="URL the end of each batch is posted to as a signed event (webhooks)."
    )
    webhook_secret: str | None = Field(
        None, description="whsec_ secret the events are signed with (Standard Webhooks)."
    )
    webhook_drop_rate: float = Field(
        0.0, ge=0, le=1, description="Fraction of batch events never sent (dice of seed)."
    )
    webhook_duplicates: int = Field(
        0, ge=0, description="Extra copies of each event, with the same webhook-id."
    )
    webhook_delay_seconds: float = Field(
        0.0, ge=0, description="Real seconds each event is held before it is sent."
    )
    webhook_reorder_seconds: float = Field(
        0.0,
        ge=0,
        description="Each event is held up to this many more real seconds (random), "
        "so later events overtake earlier ones.",
    )
    webhook_retry_seconds: float = Field(
        300.0,
        ge=0,
        description="Real seconds an event not answered 2xx is retried for (backoff 1 s to 30 s).",
    )

    @property
    def auth_required(self) -> bool:
        return bool(self.auth_header and self.auth_key)


def merge(current: Knobs, patch: Mapping[str, Any]) -> Knobs:
    """Validate ``patch`` against the model and return a new Knobs (never half-applied)."""
    return Knobs.model_validate({**current.model_dump(), **patch})


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list


def _is_optional(annotation: Any) -> bool:
    origin = get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in get_args(annotation)


def _coerce(field: str, raw: str) -> Any:
    """Turn a flag or env string into what pydantic expects for ``field``."""
    annotation = Knobs.model_fields[field].annotation
    if _is_list(annotation):
        text = raw.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    if _is_optional(annotation) and raw.strip() in ("", "none", "null"):
        return None
    return raw


def add_knob_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per knob, named after the field (``time_scale`` → ``--time-scale``)."""
    group = parser.add_argument_group("knobs (also EMULATOR_<NAME> environment variables)")
    for name, field in Knobs.model_fields.items():
        flags = [flag_name(name)]
        if name == "upstream_url":
            flags.append("--upstream")
        default = field.get_default(call_default_factory=True)
        group.add_argument(
            *flags,
            dest=name,
            default=None,
            metavar=name.upper(),
            help=f"{field.description} (default: {default})",
        )


def knobs_from(environ: Mapping[str, str], args: argparse.Namespace | None = None) -> Knobs:
    """Defaults, then EMULATOR_* variables, then flags."""
    raw: dict[str, Any] = {}
    for name in Knobs.model_fields:
        value = environ.get(env_name(name))
        if value is not None:
            raw[name] = _coerce(name, value)
        if args is not None and getattr(args, name, None) is not None:
            raw[name] = _coerce(name, getattr(args, name))
    return Knobs.model_validate(raw)

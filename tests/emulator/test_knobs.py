"""Knobs from defaults, environment and flags, in that order of precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from emulator.__main__ import parser
from emulator.knobs import Knobs, env_name, flag_name, knobs_from, merge


def test_defaults_are_the_documented_contract() -> None:
    k = Knobs()

    assert (k.time_scale, k.validating_seconds, k.finalizing_seconds) == (1.0, 1.0, 1.0)
    assert k.line_latency_seconds == 0.05
    assert (k.error_rate, k.drop_rate, k.line_failure_rate) == (0.0, 0.0, 0.0)
    assert k.error_statuses == [500, 502, 503, 429]
    assert (k.retry_after_seconds, k.seed) == (1.0, 0)
    assert (k.force_outcome, k.dialect) == ("none", "openai")
    assert (k.auth_header, k.auth_key, k.upstream_url) == (None, None, None)
    assert k.upstream_concurrency == 8
    assert (k.max_requests_per_file, k.max_file_bytes) == (50_000, 200 * 1024 * 1024)


def test_every_knob_has_a_flag_and_an_env_var() -> None:
    help_text = parser().format_help()

    for name in Knobs.model_fields:
        assert flag_name(name) in help_text
        assert env_name(name).startswith("EMULATOR_")
    assert "--upstream " in help_text or "--upstream," in help_text


def test_flags_beat_env_and_env_beats_defaults() -> None:
    env = {
        "EMULATOR_TIME_SCALE": "60",
        "EMULATOR_ERROR_STATUSES": "503, 429",
        "EMULATOR_DIALECT": "azure",
        "EMULATOR_AUTH_HEADER": "apikey",
    }
    args = parser().parse_args(
        ["--time-scale", "3600", "--upstream", "http://localhost:11434/v1", "--auth-header", "none"]
    )

    k = knobs_from(env, args)

    assert k.time_scale == 3600
    assert k.error_statuses == [503, 429]
    assert k.dialect == "azure"
    assert k.upstream_url == "http://localhost:11434/v1"
    assert k.auth_header is None


def test_invalid_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        knobs_from({"EMULATOR_ERROR_RATE": "1.5"})
    with pytest.raises(ValidationError):
        knobs_from({"EMULATOR_FORCE_OUTCOME": "sometimes"})


def test_merge_applies_all_or_nothing() -> None:
    k = Knobs()

    assert merge(k, {"drop_rate": 0.25}).drop_rate == 0.25
    with pytest.raises(ValidationError):
        merge(k, {"drop_rate": 0.25, "time_scale": 0})
    assert k.drop_rate == 0.0


def test_docs_table_names_every_knob_with_flag_and_env() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| `")}

    for name in Knobs.model_fields:
        row = rows.get(f"`{name}`")
        assert row is not None, f"docs/emulator.md has no row for {name}"
        assert f"`{flag_name(name)}`" in row and f"`{env_name(name)}`" in row

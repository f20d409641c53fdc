"""Price table, estimate before a job, and actual cost from usage after it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from shards.cost import (
    ModelUsage,
    cost_of,
    describe_cost,
    describe_estimate,
    estimate,
    load_prices,
    tally_usage,
)
from shards.limits import ShardLimits
from shards.split import LineTooLarge
from tests.shards.helpers import ok, request, write_jsonl


def test_committed_table_is_dated_and_prices_batch_rates_per_million() -> None:
    table = load_prices()

    assert table.as_of == date(2025, 8, 7)
    assert table.currency == "USD"
    assert table.models["gpt-4o-mini"].input == 0.075
    assert table.models["gpt-4o"].output == 5.0
    assert table.models["text-embedding-3-small"].output == 0.0


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-batch", "gpt-4.1"),
        ("gpt-4.1-mini-batch", "gpt-4.1-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("my-deployment", None),
    ],
)
def test_models_and_deployment_names_find_their_price(name: str, entry: str | None) -> None:
    found = load_prices().price_of(name)

    assert (found[0] if found else None) == entry


def test_a_user_file_overrides_prices_and_maps_deployments(tmp_path: Path) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps(
            {
                "as_of": "2026-11-01",
                "models": {"gpt-4o-mini": {"input": 0.05, "output": 0.2}},
                "aliases": {"my-deployment": "gpt-4o-mini"},
            }
        )
    )

    table = load_prices(override)

    assert table.as_of == date(2026, 11, 1)
    assert table.price_of("my-deployment") == ("gpt-4o-mini", table.models["gpt-4o-mini"])
    assert table.models["gpt-4o-mini"].input == 0.05
    assert table.models["gpt-4o"].input == 1.25

    override.write_text(json.dumps({"models": {"x": {"input": -1, "output": 0}}}))
    with pytest.raises(ValueError, match="not a valid price file"):
        load_prices(override)


def test_cost_of_usage_by_model_and_unpriced_models_are_named() -> None:
    report = cost_of(
        {
            "gpt-4o-mini-2024-07-18": ModelUsage(input_tokens=2_000_000, output_tokens=1_000_000),
            "local-llama": ModelUsage(input_tokens=10, output_tokens=10),
        }
    )

    assert report.total == pytest.approx(2 * 0.075 + 1 * 0.3)
    assert [(r.model, r.priced_as) for r in report.by_model] == [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("local-llama", None),
    ]
    assert report.unpriced_models == ["local-llama"]
    assert report.prices_as_of == date(2025, 8, 7)


def test_usage_is_tallied_by_the_model_each_response_names(tmp_path: Path) -> None:
    results = write_jsonl(
        tmp_path / "out.jsonl",
        [
            ok("a", 100, 20, model="gpt-4o-mini-2024-07-18"),
            ok("b", 50, 5, model="gpt-4o-mini-2024-07-18"),
            ok("c", 7, 3, model="gpt-4o"),
        ],
    )

    usage = tally_usage(results)

    assert usage == {
        "gpt-4o-mini-2024-07-18": ModelUsage(input_tokens=150, output_tokens=25),
        "gpt-4o": ModelUsage(input_tokens=7, output_tokens=3),
    }


def test_estimate_counts_requests_shards_tokens_and_cost(tmp_path: Path) -> None:
    rows = [request(f"r{i}", "x" * 396, max_tokens=100) for i in range(5)]
    rows.append(request("open-ended", "y" * 396))
    source = write_jsonl(tmp_path / "in.jsonl", rows)

    found = estimate(source, ShardLimits(max_requests=4))

    assert (found.requests, found.shards, found.bytes) == (6, 2, source.stat().st_size)
    assert found.estimated_input_tokens == 6 * (99 + 3 + 3)
    assert (found.output_token_ceiling, found.unlimited_requests) == (500, 1)
    assert found.input_cost == pytest.approx(630 * 0.075 / 1e6)
    assert found.output_cost_ceiling == pytest.approx(500 * 0.3 / 1e6)
    assert found.cost_ceiling == pytest.approx(found.input_cost + found.output_cost_ceiling)
    assert "4 characters" in found.token_heuristic
    assert [m.priced_as for m in found.by_model] == ["gpt-4o-mini"]


def test_estimate_agrees_with_the_split_on_shards_and_refuses_an_oversized_line(
    tmp_path: Path,
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [request("a"), request("big", "z" * 900)])

    assert estimate(source, ShardLimits(max_bytes=1100)).shards == 2
    with pytest.raises(LineTooLarge, match=r"in\.jsonl:2: custom_id='big'"):
        estimate(source, ShardLimits(max_bytes=500), label="in.jsonl")


def test_estimate_and_cost_read_as_lines_a_user_checks(tmp_path: Path) -> None:
    rows = [request(f"r{i}", "x" * 396, max_tokens=100) for i in range(3)]
    rows.append(request("free", "y", model="local-llama"))
    found = estimate(write_jsonl(tmp_path / "in.jsonl", rows), ShardLimits(max_requests=2))

    text = "\n".join(describe_estimate(found))

    assert "requests: 4 in 2 shard(s) (at most 2 requests and 209,715,200 bytes a batch)" in text
    assert "input:    about 322 tokens (about 4 characters" in text
    assert "output:   at most 300 tokens; 1 request(s) set no limit and are not counted" in text
    assert "at batch prices of 2025-08-07 (gpt-4o-mini as gpt-4o-mini)" in text
    assert "no price: local-llama" in text

    report = cost_of({"gpt-4o": ModelUsage(input_tokens=1_000_000, output_tokens=200_000)})
    assert describe_cost(report) == [
        "gpt-4o: 1,000,000 input + 200,000 output tokens, $2.25",
        "total: $2.25 at batch prices of 2025-08-07",
    ]

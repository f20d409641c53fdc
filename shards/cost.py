"""What a job will cost before it runs, and what it did cost after.

Prices come from ``prices.json`` beside this module: a dated table of batch
prices (discount included) per million tokens, which a user overrides or
extends with a file of the same shape. Kong logs no token statistics for batch
routes, so this is the only place a Kong user learns what a batch cost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shards.limits import ShardLimits
from shards.lines import custom_id_of, numbered_lines
from shards.split import LineTooLarge
from shards.tokens import request_tokens

DEFAULT_PRICES = Path(__file__).with_name("prices.json")
TOKEN_HEURISTIC = (
    "about 4 characters of text per token, plus 3 per chat message and 3 per chat "
    "request; images, audio and files not counted (no tokenizer)"
)
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")
MILLION = 1_000_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelPrice(_Model):
    input: float = Field(ge=0, description="Per million input tokens, batch price.")
    output: float = Field(ge=0, description="Per million output tokens, batch price.")


class PriceTable(_Model):
    as_of: date
    currency: str = "USD"
    unit: str = ""
    source: str = ""
    models: dict[str, ModelPrice]
    aliases: dict[str, str] = Field(
        default_factory=dict, description="Deployment name -> model name, e.g. Azure's."
    )

    def price_of(self, model: str) -> tuple[str, ModelPrice] | None:
        """(the entry used, its price): exact, alias, without a date suffix, longest prefix."""
        name = self.aliases.get(model, model)
        for candidate in (name, _DATED.sub("", name)):
            if candidate in self.models:
                return candidate, self.models[candidate]
        prefixes = [known for known in self.models if name.startswith(known + "-")]
        if not prefixes:
            return None
        best = max(prefixes, key=len)
        return best, self.models[best]


def load_prices(override: Path | None = None) -> PriceTable:
    """The committed table, with an override file's models, aliases and date on top."""
    table = PriceTable.model_validate_json(DEFAULT_PRICES.read_text())
    if override is None:
        return table
    extra: Any = json.loads(override.read_text())
    if not isinstance(extra, dict):
        raise ValueError(f"{override}: a price file is a JSON object like {DEFAULT_PRICES.name}")
    merged = table.model_dump()
    merged["models"].update(extra.get("models", {}))
    merged["aliases"].update(extra.get("aliases", {}))
    for key in ("as_of", "currency", "unit", "source"):
        if key in extra:
            merged[key] = extra[key]
    try:
        return PriceTable.model_validate(merged)
    except ValueError as exc:
        raise ValueError(f"{override}: not a valid price file: {exc}") from exc


class ModelUsage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0


class ModelCost(_Model):
    model: str
    priced_as: str | None = Field(description="The price table entry used; None: no price.")
    input_tokens: int
    output_tokens: int
    cost: float | None


class CostReport(_Model):
    currency: str
    prices_as_of: date
    by_model: list[ModelCost]
    total: float = Field(description="Sum over the models that have a price.")
    unpriced_models: list[str] = Field(default_factory=list)


def cost_of(
    usage_by_model: Mapping[str, ModelUsage], prices: PriceTable | None = None
) -> CostReport:
    """Actual cost from the responses' usage, per model and in total."""
    table = prices or load_prices()
    rows: list[ModelCost] = []
    for model, usage in sorted(usage_by_model.items()):
        found = table.price_of(model)
        cost = None
        if found is not None:
            price = found[1]
            cost = (usage.input_tokens * price.input + usage.output_tokens * price.output) / MILLION
        rows.append(
            ModelCost(
                model=model,
                priced_as=None if found is None else found[0],
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost=cost,
            )
        )
    return CostReport(
        currency=table.currency,
        prices_as_of=table.as_of,
        by_model=rows,
        total=sum(r.cost for r in rows if r.cost is not None),
        unpriced_models=[r.model for r in rows if r.cost is None],
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tally_usage(
    results_path: Path, into: dict[str, ModelUsage] | None = None
) -> dict[str, ModelUsage]:
    """Tokens by the model each response names, from a results file's ``usage``."""
    totals = {} if into is None else into
    for _, raw in numbered_lines(results_path):
        line: Any = json.loads(raw)
        response = line.get("response") if isinstance(line, dict) else None
        body = response.get("body") if isinstance(response, dict) else None
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            continue
        model = body.get("model") if isinstance(body, dict) else None
        key = model if isinstance(model, str) and model else "unknown"
        found = totals.setdefault(key, ModelUsage())
        found.input_tokens += _count(usage.get("prompt_tokens", usage.get("input_tokens")))
        found.output_tokens += _count(usage.get("completion_tokens", usage.get("output_tokens")))
    return totals


class ModelEstimate(_Model):
    model: str
    priced_as: str | None
    requests: int = 0
    estimated_input_tokens: int = 0
    output_token_ceiling: int = 0
    unlimited_requests: int = Field(default=0, description="No output limit: not in the ceiling.")
    input_cost: float | None = None
    output_cost_ceiling: float | None = None


class CostEstimate(_Model):
    requests: int
    bytes: int
    shards: int
    limits: ShardLimits
    estimated_input_tokens: int
    output_token_ceiling: int
    unlimited_requests: int
    input_cost: float = Field(description="Estimated, for the priced models.")
    output_cost_ceiling: float = Field(description="At most, for requests with an output limit.")
    currency: str
    prices_as_of: date
    token_heuristic: str = TOKEN_HEURISTIC
    by_model: list[ModelEstimate]
    unpriced_models: list[str] = Field(default_factory=list)

    @property
    def cost_ceiling(self) -> float:
        return self.input_cost + self.output_cost_ceiling


def estimate(
    path: Path, limits: ShardLimits, *, prices: PriceTable | None = None, label: str | None = None
) -> CostEstimate:
    """Requests, shards, estimated tokens and cost of a (validated) input, streaming it once."""
    table = prices or load_prices()
    name = label or str(path)
    models: dict[str, ModelEstimate] = {}
    requests = total_bytes = shards = 0
    shard_requests = shard_bytes = 0
    for number, raw in numbered_lines(path):
        size = len(raw)
        if size > limits.max_bytes:
            raise LineTooLarge(name, number, custom_id_of(raw), size, limits.max_bytes)
        if shards == 0 or limits.full(shard_requests, shard_bytes, size):
            shards, shard_requests, shard_bytes = shards + 1, 0, 0
        shard_requests, shard_bytes = shard_requests + 1, shard_bytes + size
        requests, total_bytes = requests + 1, total_bytes + size
        line: Any = json.loads(raw)
        body = line.get("body") if isinstance(line, dict) else None
        if not isinstance(body, dict):
            continue
        named = body.get("model")
        model = named if isinstance(named, str) and named else "unknown"
        row = models.get(model)
        if row is None:
            found = table.price_of(model)
            row = models[model] = ModelEstimate(
                model=model, priced_as=None if found is None else found[0]
            )
        tokens = request_tokens(body, line.get("url"))
        row.requests += 1
        row.estimated_input_tokens += tokens.input_tokens
        if tokens.output_ceiling is None:
            row.unlimited_requests += 1
        else:
            row.output_token_ceiling += tokens.output_ceiling
    rows = sorted(models.values(), key=lambda r: r.model)
    for row in rows:
        if row.priced_as is not None:
            price = table.models[row.priced_as]
            row.input_cost = row.estimated_input_tokens * price.input / MILLION
            row.output_cost_ceiling = row.output_token_ceiling * price.output / MILLION
    return CostEstimate(
        requests=requests,
        bytes=total_bytes,
        shards=shards,
        limits=limits,
        estimated_input_tokens=sum(r.estimated_input_tokens for r in rows),
        output_token_ceiling=sum(r.output_token_ceiling for r in rows),
        unlimited_requests=sum(r.unlimited_requests for r in rows),
        input_cost=sum(r.input_cost or 0.0 for r in rows),
        output_cost_ceiling=sum(r.output_cost_ceiling or 0.0 for r in rows),
        currency=table.currency,
        prices_as_of=table.as_of,
        by_model=rows,
        unpriced_models=[r.model for r in rows if r.priced_as is None],
    )


def _money(amount: float, currency: str) -> str:
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{symbol}{amount:,.2f}" if amount >= 0.01 or amount == 0 else f"{symbol}{amount:.4f}"


def describe_estimate(found: CostEstimate) -> list[str]:
    """The estimate as the lines ``starter.py estimate`` prints."""
    limits = found.limits
    lines = [
        f"requests: {found.requests:,} in {found.shards:,} shard(s) "
        f"(at most {limits.max_requests:,} requests and {limits.max_bytes:,} bytes a batch)",
        f"input:    about {found.estimated_input_tokens:,} tokens ({found.token_heuristic})",
    ]
    unlimited = (
        f"; {found.unlimited_requests:,} request(s) set no limit and are not counted"
        if found.unlimited_requests
        else ""
    )
    lines.append(f"output:   at most {found.output_token_ceiling:,} tokens{unlimited}")
    priced = ", ".join(f"{m.model} as {m.priced_as}" for m in found.by_model if m.priced_as)
    lines.append(
        f"cost:     about {_money(found.input_cost, found.currency)} input + at most "
        f"{_money(found.output_cost_ceiling, found.currency)} output = at most "
        f"{_money(found.cost_ceiling, found.currency)} at batch prices of "
        f"{found.prices_as_of.isoformat()}" + (f" ({priced})" if priced else "")
    )
    if found.unpriced_models:
        lines.append(f"no price: {', '.join(found.unpriced_models)} (add them with a prices file)")
    return lines


def describe_cost(report: CostReport) -> list[str]:
    """Actual tokens and cost by model, as a summary prints them."""
    lines = []
    for row in report.by_model:
        cost = "no price" if row.cost is None else _money(row.cost, report.currency)
        lines.append(
            f"{row.model}: {row.input_tokens:,} input + {row.output_tokens:,} output tokens, {cost}"
        )
    lines.append(
        f"total: {_money(report.total, report.currency)} at batch prices of "
        f"{report.prices_as_of.isoformat()}"
        + (f"; no price for {', '.join(report.unpriced_models)}" if report.unpriced_models else "")
    )
    return lines

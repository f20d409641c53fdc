"""Turns the gateway's output and error files into the job's results, checked.

Output lines come in no order and a request can fail inside a completed batch,
so every line is joined to the input on custom_id: each input request lands
exactly once in the results or the errors file (the ones the batch never ran
get a line of their own). Both files are written in input order: the join
notes where each line sits in the downloaded files, then writes them in the
order of the index, one read a line (a sharded job's merge is then a plain
concatenation of its shards). A line that joins no request (an unknown or
repeated custom_id, a truncated line) is kept at the end of the errors file
under a code of its own and said out loud in the problems: it never costs the
lines that do join.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from contracts.ids import quoted
from contracts.job import BatchCounts, ModelTokens, RequestTally, TokenTotals
from contracts.text import printable

# Codes of the lines of the gateway's files that join no request of the input.
UNPARSEABLE_LINE = "unparseable_output_line"
OVERSIZED_LINE = "oversized_output_line"
NO_CUSTOM_ID = "missing_custom_id"
UNKNOWN_CUSTOM_ID = "unknown_custom_id"
DUPLICATE_RESULT = "duplicate_result"
# How many places each code's problem line names: the rest are in the errors file.
EXAMPLES_PER_PROBLEM = 3
# The longest line of the gateway's files that is read: a response line is a
# few kB to a few MB (embeddings of long inputs); a longer one is a gateway
# fault or an attack, kept (its start) as oversized_output_line, never held whole.
MAX_OUTPUT_LINE_BYTES = 64 * 1024 * 1024
# How much of a line that joins nothing the errors file keeps.
MAX_KEPT_RAW_BYTES = 64 * 1024
# Token counts are kept for this many models (a batch has one); the rest as "other".
MAX_MODELS = 20
MAX_MODEL_CHARS = 100
OTHER_MODELS = "other"


class ResultIntegrityError(Exception):
    """The input can no longer be the one validated, and no index of it was kept."""


@dataclass
class CollectedFiles:
    tally: RequestTally
    usage: TokenTotals
    problems: list[str] = field(default_factory=list)


def read_input_ids(path: Path) -> dict[str, int]:
    """custom_id -> line number, for an input that already passed validation."""
    ids, _ = read_input_ids_and_sha256(path)
    if ids is None:
        raise ResultIntegrityError(f"{path}: no longer the input that was validated")
    return ids


def read_input_ids_and_sha256(path: Path) -> tuple[dict[str, int] | None, str]:
    """The ids and, in the same pass, the sha256 of the bytes they were read from.

    The ids are None when a line no longer parses: the file changed since it
    was validated, which the sha256 (read to the end regardless) tells.
    """
    ids: dict[str, int] | None = {}
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            digest.update(raw)
            if ids is None or not raw.strip():
                continue
            try:
                ids[json.loads(raw.decode("utf-8-sig"))["custom_id"]] = number
            except (ValueError, KeyError, TypeError):
                ids = None
    return ids, digest.hexdigest()


class _Line(NamedTuple):
    number: int
    offset: int
    raw: bytes
    """The line, or its first `limit` bytes when it is longer."""
    size: int
    """The line's whole length in the file."""


def _lines(path: Path | None, limit: int) -> Iterator[_Line]:
    """Every non-blank line, each read up to limit bytes: a longer one is never held whole."""
    if path is None:
        return
    offset = 0
    number = 0
    with path.open("rb") as stream:
        while raw := stream.readline(limit + 1):
            number += 1
            size = len(raw)
            if size > limit and not raw.endswith(b"\n"):
                raw = raw[:limit]
                while (rest := stream.readline(limit)) and not rest.endswith(b"\n"):
                    size += len(rest)
                size += len(rest)
            if raw.strip():
                yield _Line(number, offset, raw, size)
            offset += size


def _failure_code(line: dict[str, Any]) -> str | None:
    """None when the line is a success, else the most specific code it carries."""
    error = line.get("error")
    if isinstance(error, dict) and error:
        return str(error.get("code") or error.get("type") or "error")
    if error:
        return "error"
    response = line.get("response")
    if not isinstance(response, dict):
        return "no_response"
    status = response.get("status_code")
    if not isinstance(status, int) or status >= 400:
        body = response.get("body")
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            inner = body["error"]
            if inner.get("code") or inner.get("type"):
                return str(inner.get("code") or inner.get("type"))
        return f"http_{status}"
    return None


def _count(value: Any) -> int:
    """A token count as a model server reports it; anything odd counts as none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class _Usage:
    """Token counts of the successful lines, in total and by the model each names.

    Plain integers while the lines stream by (this runs once per line); a
    sharded job's parent sums the children's by-model counts to price the job
    without reading every result line again.
    """

    def __init__(self) -> None:
        self.prompt = self.completion = self.total = 0
        self.by_model: dict[str, list[int]] = {}

    def add(self, line: dict[str, Any]) -> None:
        body = (line.get("response") or {}).get("body")
        if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
            return
        found = body["usage"]
        prompt = _count(found.get("prompt_tokens", found.get("input_tokens")))
        completion = _count(found.get("completion_tokens", found.get("output_tokens")))
        self.prompt += prompt
        self.completion += completion
        self.total += _count(found.get("total_tokens")) or prompt + completion
        named = body.get("model")
        model = printable(named, MAX_MODEL_CHARS) if isinstance(named, str) and named else "unknown"
        if model not in self.by_model and len(self.by_model) >= MAX_MODELS:
            # The names come from the responses: a hostile file cannot grow the result.
            model = OTHER_MODELS
        counts = self.by_model.setdefault(model, [0, 0])
        counts[0] += prompt
        counts[1] += completion

    def totals(self) -> TokenTotals:
        return TokenTotals(
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            total_tokens=self.total,
            by_model={
                model: ModelTokens(prompt_tokens=prompt, completion_tokens=completion)
                for model, (prompt, completion) in sorted(self.by_model.items())
            },
        )


class _Unjoined:
    """Lines of the gateway's files that join no request: kept, counted, a few named."""

    def __init__(self, spool: IO[bytes]) -> None:
        self.errors_out = spool
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def keep(
        self,
        code: str,
        source: _Source,
        number: int,
        raw: bytes,
        detail: str,
        found_custom_id: str | None = None,
    ) -> None:
        where = source.where(number)
        self.counts[code] += 1
        shown = self.examples.setdefault(code, [])
        if len(shown) < EXAMPLES_PER_PROBLEM:
            shown.append(f"{where} ({detail})")
        # custom_id stays null: every input custom_id is in the results or the
        # errors file exactly once, and these lines are none of them.
        record = {
            "custom_id": None,
            "response": None,
            "error": {
                "code": code,
                "message": f"{where}: {detail}",
                "file": source.label,
                "file_id": source.file_id,
                "line": number,
                "found_custom_id": found_custom_id,
            },
            "raw": raw[:MAX_KEPT_RAW_BYTES]
            .decode("utf-8", errors="backslashreplace")
            .rstrip("\r\n"),
        }
        self.errors_out.write(json.dumps(record).encode() + b"\n")

    def problems(self) -> list[str]:
        """One bounded line per code: a count and the first few places."""
        found = []
        for code, count in sorted(self.counts.items()):
            more = count - len(self.examples[code])
            listed = "; ".join(self.examples[code]) + (f"; and {more} more" if more else "")
            found.append(
                f"{count} line(s) of the gateway's files joined no request; written to the "
                f"errors file as {code}: {listed}"
            )
        return found


@dataclass(frozen=True)
class _Source:
    label: str
    file_id: str | None
    path: Path | None
    slot: int

    def where(self, number: int) -> str:
        return f"{self.label} file {self.file_id or '?'} line {number}"


class _Joined(NamedTuple):
    """Where a request's line sits in the downloaded files, and which output it goes to."""

    source: _Source
    number: int
    offset: int
    size: int
    failed: bool


def _write_in_input_order(
    input_ids: dict[str, int],
    seen: dict[str, _Joined],
    sources: tuple[_Source, _Source],
    results_out: IO[bytes],
    errors_out: IO[bytes],
    not_run: tuple[str, str],
) -> None:
    """Every request's line where the input has it; a not-run line for one never seen."""
    code, message = not_run
    with ExitStack() as stack:
        fds = [
            stack.enter_context(s.path.open("rb")).fileno() if s.path is not None else -1
            for s in sources
        ]
        for custom_id in input_ids:  # insertion order is input order
            hit = seen.get(custom_id)
            if hit is None:
                line = {
                    "custom_id": custom_id,
                    "response": None,
                    "error": {"code": code, "message": message},
                }
                errors_out.write(json.dumps(line).encode() + b"\n")
                continue
            raw = os.pread(fds[hit.source.slot], hit.size, hit.offset)
            out = errors_out if hit.failed else results_out
            out.write(raw if raw.endswith(b"\n") else raw + b"\n")


def collect_results(
    *,
    input_ids: dict[str, int],
    output_file: Path | None,
    error_file: Path | None,
    results_out: IO[bytes],
    errors_out: IO[bytes],
    not_run_code: str,
    not_run_message: str,
    batch_counts: BatchCounts | None,
    batch_completed: bool,
    output_file_id: str | None = None,
    error_file_id: str | None = None,
    max_line_bytes: int | None = None,
) -> CollectedFiles:
    """Write every line that joins a request once; keep the ones that do not beside them.

    The requests were paid for, so one bad line (an unknown or repeated
    custom_id, a truncated line) costs that line, never the rest: it goes to
    the errors file with a code saying why, and into the problems.
    """
    line_limit = max_line_bytes or MAX_OUTPUT_LINE_BYTES
    seen: dict[str, _Joined] = {}
    failures: Counter[str] = Counter()
    succeeded = 0
    usage = _Usage()
    problems: list[str] = []
    sources = (
        _Source("output", output_file_id, output_file, 0),
        _Source("error", error_file_id, error_file, 1),
    )
    with tempfile.TemporaryFile() as spool:
        unjoined = _Unjoined(spool)
        for source in sources:
            for number, offset, raw, size in _lines(source.path, line_limit):
                if size > len(raw):
                    unjoined.keep(
                        OVERSIZED_LINE,
                        source,
                        number,
                        raw,
                        f"{size} bytes, over the {line_limit} a line may hold",
                    )
                    continue
                try:
                    line = json.loads(raw)
                except RecursionError:
                    # A line of [[[[…: a hostile or broken answer, never a response.
                    unjoined.keep(UNPARSEABLE_LINE, source, number, raw, "nested too deeply")
                    continue
                except ValueError as exc:
                    # JSONDecodeError, or UnicodeDecodeError when a cut falls inside a
                    # multi-byte character: both mean the same thing here.
                    why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                    unjoined.keep(
                        UNPARSEABLE_LINE,
                        source,
                        number,
                        raw,
                        f"not JSON: {why}; truncated or corrupt",
                    )
                    continue
                custom_id = line.get("custom_id") if isinstance(line, dict) else None
                if not isinstance(custom_id, str):
                    unjoined.keep(NO_CUSTOM_ID, source, number, raw, "no custom_id")
                    continue
                if custom_id not in input_ids:
                    unjoined.keep(
                        UNKNOWN_CUSTOM_ID,
                        source,
                        number,
                        raw,
                        f"custom_id={quoted(custom_id)} is not in the input",
                        custom_id,
                    )
                    continue
                if custom_id in seen:
                    first = seen[custom_id]
                    unjoined.keep(
                        DUPLICATE_RESULT,
                        source,
                        number,
                        raw,
                        f"custom_id={quoted(custom_id)} again; the first, "
                        f"{first.source.where(first.number)}, was kept",
                        custom_id,
                    )
                    continue
                failure = _failure_code(line)
                ok = failure is None and source.label == "output"
                seen[custom_id] = _Joined(source, number, offset, size, not ok)
                if ok:
                    succeeded += 1
                    usage.add(line)
                else:
                    failures[failure or "error"] += 1
        problems.extend(unjoined.problems())

        missing = len(input_ids) - len(seen)
        if missing and batch_completed:
            first_missing = next(cid for cid in input_ids if cid not in seen)
            problems.append(
                f"{missing} request(s) are missing from a completed batch's files "
                f"(first: custom_id={quoted(first_missing)}, input line {input_ids[first_missing]})"
            )
            code, message = "missing_from_output", "the gateway returned no line for this request"
        else:
            code, message = not_run_code, not_run_message
        if missing:
            failures[code] += missing
        _write_in_input_order(input_ids, seen, sources, results_out, errors_out, (code, message))
        # The lines that joined nothing follow every request's own line.
        spool.seek(0)
        shutil.copyfileobj(spool, errors_out)

    if batch_counts is not None and batch_completed:
        if batch_counts.total and batch_counts.total != len(input_ids):
            problems.append(
                f"the gateway counts {batch_counts.total} requests, the input has {len(input_ids)}"
            )
        reported = batch_counts.completed + batch_counts.failed
        if reported and reported != len(seen):
            problems.append(
                f"the gateway reports {reported} finished requests, its files hold {len(seen)}"
            )

    failed = sum(n for c, n in failures.items() if c not in (not_run_code,))
    not_run = failures.get(not_run_code, 0)
    return CollectedFiles(
        tally=RequestTally(
            total=len(input_ids),
            succeeded=succeeded,
            failed=failed,
            not_run=not_run,
            failures_by_code=dict(sorted(failures.items())),
        ),
        usage=usage.totals(),
        problems=problems,
    )

"""--every as people type it, and as `schedule list` prints it back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cli.durations import format_every, parse_every, readable
from cli.exits import UsageError


@pytest.mark.parametrize(
    ("text", "every"),
    [
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("7d", timedelta(days=7)),
        (" 1.5H ", timedelta(minutes=90)),
    ],
)
def test_durations_people_type(text: str, every: timedelta):
    assert parse_every(text) == every


@pytest.mark.parametrize("text", ["", "24", "h", "1h 30m", "1w", "-1h", "1h30"])
def test_anything_else_is_one_error_with_examples(text: str):
    with pytest.raises(UsageError, match=r"--every .*expected a duration such as 24h"):
        parse_every(text)


def test_less_than_a_second_is_refused():
    with pytest.raises(UsageError, match="at least 1s"):
        parse_every("0.5s")


@pytest.mark.parametrize(
    ("every", "printed"),
    [
        (timedelta(hours=24), "1d"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=1, hours=2, minutes=3, seconds=4), "1d2h3m4s"),
        (timedelta(0), "0s"),
    ],
)
def test_printed_back_in_the_shortest_spelling_it_reads(every: timedelta, printed: str):
    assert format_every(every) == printed
    if every:
        assert parse_every(printed) == every


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0 s"),
        (2.274226, "2.3 s"),
        (42.4, "42 s"),
        (60.0, "1 min 0 s"),
        (61.6, "1 min 2 s"),
        (3600 + 5 * 60 + 7, "1 h 5 min"),
        (86400 + 3 * 3600 + 1, "1 d 3 h"),
    ],
)
def test_spans_are_printed_as_people_read_them(seconds: float, shown: str):
    assert readable(seconds) == shown

"""The room rules of docs/architecture.md, checked over the code's own import statements."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# room -> the rooms of ours it may import (docs/architecture.md, "The rooms").
ALLOWED: dict[str, set[str]] = {
    "contracts": set(),
    "gateway": {"contracts"},
    "storage": set(),
    "shards": set(),
    "activities": {"contracts", "gateway", "storage", "shards"},
    "workflows": {"contracts", "observability.names", "activities"},
    "observability": {"contracts", "gateway"},
    "codec": {"contracts"},
    "cli": {"contracts", "storage", "shards", "temporal_client", "activities.validation"},
    "emulator": set(),
    "webhooks": {"contracts", "temporal_client"},
    "devstack": {"contracts", "temporal_client", "workflows"},
    "bench": {"*"} - {"tests"},
    "scripts": {"*"} - {"tests"},
}
OURS = set(ALLOWED) | {"worker", "starter", "temporal_client", "tests"}

# Breaks still to mend, each with where it is going; a new one fails the test.
KNOWN_BREAKS: set[tuple[str, str]] = {
    # The split decision moves to the worker, where the gateway's dialect is known.
    ("cli/sharded.py", "gateway.settings"),
    ("workflows/sharded_job.py", "shards.limits"),
}


def imports_of(path: Path) -> Iterator[tuple[str, int]]:
    """Every absolute module import in a file, with its line."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno


def allowed(room: str, module: str) -> bool:
    target = module.split(".")[0]
    if target not in OURS or target == room:
        return True
    rules = ALLOWED[room]
    if "*" in rules:
        return target != "tests"
    return any(module == rule or module.startswith(rule + ".") for rule in rules)


def breaks(root: Path) -> list[str]:
    """Each import that breaks a room's rule, as `path:line: room imports module`."""
    found = []
    for room in ALLOWED:
        for path in sorted((root / room).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            for module, line in imports_of(path):
                if not allowed(room, module) and (relative, module) not in KNOWN_BREAKS:
                    found.append(f"{relative}:{line}: {room} imports {module}")
    return found


def test_every_room_imports_only_what_architecture_allows() -> None:
    assert breaks(REPO) == []


def test_known_breaks_are_still_there() -> None:
    """A mended break leaves this list, so the list never hides a new one."""
    for relative, module in KNOWN_BREAKS:
        modules = {found for found, _ in imports_of(REPO / relative)}
        assert module in modules, f"{relative} no longer imports {module}: drop it from the list"


@pytest.mark.parametrize(
    ("room", "line", "expected"),
    [
        ("workflows", "from gateway.models import BatchStatus", "workflows imports gateway.models"),
        ("contracts", "import storage.local", "contracts imports storage.local"),
        ("cli", "from workflows.batch_job import X", "cli imports workflows.batch_job"),
        ("bench", "from tests.helpers import x", "bench imports tests.helpers"),
    ],
)
def test_a_deliberate_bad_import_is_caught(
    tmp_path: Path, room: str, line: str, expected: str
) -> None:
    (tmp_path / room).mkdir()
    (tmp_path / room / "bad.py").write_text(f"{line}\n")
    assert breaks(tmp_path) == [f"{room}/bad.py:1: {expected}"]

"""Commands quoted in messages, spelled the way this starter was run, so they work as typed.

A hint that says `python starter.py ...` fails with ModuleNotFoundError in a
shell where the project's environment is not activated; the same hint spelled
with the interpreter that runs now (`.venv/bin/python starter.py ...`) works.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys


def python() -> str:
    """This interpreter as a user types it: `python` when that is the one on PATH, else its path."""
    here = os.path.abspath(sys.executable)
    on_path = shutil.which("python")
    if on_path is not None and os.path.abspath(on_path) == here:
        return "python"
    relative = os.path.relpath(here)
    return relative if not relative.startswith("..") else here


def _script(name: str) -> str:
    """starter.py or worker.py beside the script that runs, as it was named on the command line."""
    invoked = sys.argv[0] if sys.argv else ""
    folder = os.path.dirname(invoked) if os.path.basename(invoked) == "starter.py" else ""
    return os.path.join(folder, name)


def starter(*args: str) -> str:
    """`<python> starter.py ARGS`, ready to paste."""
    return " ".join([python(), _script("starter.py"), *(shlex.quote(a) for a in args)])


def worker() -> str:
    """How to start a worker from here."""
    return f"{python()} {_script('worker.py')}"

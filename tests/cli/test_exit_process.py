"""Worker and starter end through exit_process: the true code, and nothing printed lost."""

from __future__ import annotations

import subprocess
import sys

from devstack.process import REPO_ROOT


def test_the_code_is_kept_and_buffered_output_is_flushed():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from temporal_client import exit_process; "
            "print('summary'); print('why', file=sys.stderr, end=''); exit_process(3)",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert done.stdout == "summary\n"
    assert done.stderr == "why"

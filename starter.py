"""The command line: start batch jobs, follow them, and read their results.

    python starter.py run examples/batch.jsonl        start, follow with a progress bar, summarise
    python starter.py start examples/batch.jsonl      start and return the workflow id
    python starter.py attach BATCH_ID FILE        follow and collect a batch that already exists
    python starter.py status|result|cancel ID
    python starter.py list
    python starter.py validate|estimate FILE          check an input, or price it, before sending
    python starter.py schema [input|result]           JSON Schemas for callers in other languages
    python starter.py schedule create NAME FILE (--cron EXPR | --every 24h) [--overlap skip]
    python starter.py schedule list|pause|unpause|delete|trigger [NAME]

Locations are s3://, az://, gs:// or file:// URIs, passed to the workers
untouched, or paths: relative to BATCH_DATA_DIR (default: the current
directory), the folder the starter and every worker share, or, when
BATCH_STORE=s3://bucket/prefix (or az://, gs://) is set, local files that run
copies there and whose results it brings back. The commands live in cli/.

`python` is the project's environment: .venv/bin/python (made by `make up`),
or plain python once it is activated (source .venv/bin/activate).
"""

import sys

try:
    from cli.app import main
    from temporal_client import exit_process
except ModuleNotFoundError as missing:  # a python without the project's requirements
    print(
        f"starter: {missing}. Run it with the project's environment: "
        ".venv/bin/python starter.py ... (make up creates .venv), "
        "or activate it first (source .venv/bin/activate)",
        file=sys.stderr,
    )
    sys.exit(2)

if __name__ == "__main__":
    exit_process(main())

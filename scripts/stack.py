"""``make demo`` and ``make up``: the local stack of devstack.local.

python -m scripts.stack demo   start all three, run examples/batch.jsonl, stop them
python -m scripts.stack up     start all three and keep them up until Ctrl-C
"""

from __future__ import annotations

import sys

from devstack.local import main

if __name__ == "__main__":
    sys.exit(main())

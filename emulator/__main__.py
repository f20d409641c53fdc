"""``python -m emulator``: parse flags and environment, then serve with uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from emulator.app import create_app
from emulator.knobs import add_knob_flags, knobs_from

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = ".local/emulator"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Batch API emulator: the files and batches routes of Kong, OpenAI, Azure.",
    )
    p.add_argument("--host", default=None, help=f"EMULATOR_HOST (default: {DEFAULT_HOST})")
    p.add_argument(
        "--port", type=int, default=None, help=f"EMULATOR_PORT (default: {DEFAULT_PORT})"
    )
    p.add_argument(
        "--data-dir", default=None, help=f"EMULATOR_DATA_DIR (default: {DEFAULT_DATA_DIR})"
    )
    p.add_argument(
        "--log-level", default=None, help="EMULATOR_LOG_LEVEL: debug, info, warning (default)"
    )
    add_knob_flags(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = os.environ
    try:
        knobs = knobs_from(env, args)
    except ValidationError as exc:
        print(f"invalid knob: {exc}", file=sys.stderr)
        return 2
    host = args.host or env.get("EMULATOR_HOST", DEFAULT_HOST)
    port = args.port or int(env.get("EMULATOR_PORT", DEFAULT_PORT))
    data_dir = Path(args.data_dir or env.get("EMULATOR_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
    level = (args.log_level or env.get("EMULATOR_LOG_LEVEL", "warning")).lower()
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    print(f"emulator on http://{host}:{port} data={data_dir}", flush=True)
    uvicorn.run(
        create_app(data_dir, knobs),
        host=host,
        port=port,
        log_level=level,
        access_log=level == "debug",
        timeout_graceful_shutdown=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m webhooks``: the receiver on WEBHOOK_HOST:WEBHOOK_PORT, Temporal from TEMPORAL_*."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import uvicorn

from contracts.constants import ENV_WEBHOOK_HOST, ENV_WEBHOOK_PORT, ENV_WEBHOOK_SECRET
from temporal_client import TemporalUnreachableError, connect
from webhooks.app import create_app
from webhooks.relay import JobRelay
from webhooks.verify import EventVerifier, parse_secrets

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8300


async def serve() -> None:
    env = os.environ
    secrets = parse_secrets(env.get(ENV_WEBHOOK_SECRET, ""))
    host = env.get(ENV_WEBHOOK_HOST, DEFAULT_HOST)
    port = int(env.get(ENV_WEBHOOK_PORT, str(DEFAULT_PORT)))
    client = await connect()
    relay = JobRelay(client)
    app = create_app(EventVerifier(secrets), relay.deliver)
    print(f"webhooks on http://{host}:{port}/webhooks ({len(secrets)} secret(s))", flush=True)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )
    await uvicorn.Server(config).serve()


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("WEBHOOK_LOG_LEVEL", "info").upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(serve())
    except (ValueError, TemporalUnreachableError) as exc:
        print(f"webhooks: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

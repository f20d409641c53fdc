"""Command line: `python -m codec keygen` and `python -m codec serve`."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from contracts.constants import ENV_CODEC_KEY


def _keygen(_: argparse.Namespace) -> int:
    from codec.aes_gcm import generate_key

    print(generate_key())
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from codec.aes_gcm import CodecKeyError, codec_from_env
    from codec.server import ENV_CORS_ORIGINS, app_from_env

    environ = dict(os.environ)
    if args.cors_origins is not None:
        environ[ENV_CORS_ORIGINS] = args.cors_origins
    try:
        codec = codec_from_env(environ)
    except CodecKeyError as exc:
        print(f"codec serve: {exc}", file=sys.stderr)
        return 2
    if codec is None:
        print(
            f"codec serve: {ENV_CODEC_KEY} is not set; the codec server needs the key "
            "the worker and starter encrypt with",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("codec.server").info(
        "codec server on http://%s:%d, key ids %s", args.host, args.port, ", ".join(codec.key_ids)
    )
    uvicorn.run(app_from_env(codec, environ), host=args.host, port=args.port, log_level="info")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    keygen = commands.add_parser("keygen", help=f"print a fresh key for {ENV_CODEC_KEY}")
    keygen.set_defaults(run=_keygen)

    serve = commands.add_parser("serve", help="run the codec server for the Web UI and CLI")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8081, help="port (default 8081)")
    serve.add_argument(
        "--cors-origins",
        default=None,
        help="comma-separated Web UI origins (default: $CODEC_SERVER_CORS_ORIGINS, "
        "else http://localhost:8233,http://localhost:8080)",
    )
    serve.set_defaults(run=_serve)

    args = parser.parse_args(argv)
    result: int = args.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

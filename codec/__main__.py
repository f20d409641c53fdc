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
    from codec.server import ENV_CORS_ORIGINS, ENV_TOKEN, app_from_env, is_loopback

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
    tokenless = not environ.get(ENV_TOKEN, "").strip()
    if tokenless and not is_loopback(args.host) and args.without_token_on != args.host:
        # Without a token it decrypts any payload for whoever reaches the port.
        print(
            f"codec serve: {ENV_TOKEN} is not set and --host {args.host} is not a loopback "
            f"address: anyone who reaches the port could decrypt every payload; set "
            f"{ENV_TOKEN} or serve on 127.0.0.1 (in a container whose port only this machine "
            f"reaches: --without-token-on {args.host})",
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
        "--without-token-on",
        metavar="HOST",
        default=None,
        help="serve without CODEC_SERVER_TOKEN on this non-loopback --host all the same: for a "
        "container whose published port only this machine reaches (docker-compose.yml)",
    )
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

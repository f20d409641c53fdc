"""Codec server: the Temporal Web UI and CLI show decrypted payloads to whoever holds the key.

It speaks the Temporal codec server protocol: ``POST /encode`` and ``POST /decode``
take and return ``{"payloads": [...]}``, each payload in protobuf JSON (base64
metadata values and data). The same routes answer under a namespace prefix,
``/{namespace}/decode``, for the CLI's ``--codec-endpoint`` templating.

Environment:

- ``CODEC_SERVER_TOKEN``: when set, every encode/decode needs
  ``Authorization: Bearer <token>`` (the CLI's ``--codec-auth``).
- ``CODEC_SERVER_CORS_ORIGINS``: comma-separated origins of the Web UI allowed to
  call from a browser (default: the dev server UI and the docker-compose UI).
- ``CODEC_SERVER_NAMESPACES``: comma-separated namespaces served; when set, a
  request for another namespace (``X-Namespace`` header or path prefix) gets 403.

Anyone who can reach this server and pass its auth can decrypt, so it listens on
127.0.0.1 unless told otherwise, and `python -m codec serve` refuses a
non-loopback address without a token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from codec.aes_gcm import PayloadDecryptionError

ENV_TOKEN = "CODEC_SERVER_TOKEN"
ENV_CORS_ORIGINS = "CODEC_SERVER_CORS_ORIGINS"
ENV_NAMESPACES = "CODEC_SERVER_NAMESPACES"

# The Web UI of `temporal server start-dev` and the one in docker-compose.yml.
DEFAULT_CORS_ORIGINS = ("http://localhost:8233", "http://localhost:8080")
NAMESPACE_HEADER = "X-Namespace"

log = logging.getLogger("codec.server")

Transform = Callable[[Sequence[Payload]], Awaitable[list[Payload]]]


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_app(
    codec: PayloadCodec,
    *,
    cors_origins: Sequence[str] = DEFAULT_CORS_ORIGINS,
    token: str | None = None,
    namespaces: Sequence[str] | None = None,
) -> FastAPI:
    """The codec server around `codec`; token None means no auth, namespaces None means any."""
    allowed_namespaces = frozenset(namespaces) if namespaces else None
    app = FastAPI(title="Batch payload codec server", docs_url=None, redoc_url=None)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(cors_origins),
        allow_methods=["POST"],
        allow_headers=["Content-Type", NAMESPACE_HEADER, "Authorization"],
        # The UI's "include cross-origin credentials" option sends cookies.
        allow_credentials=True,
        # A UI served from the internet (Temporal Cloud) may call a codec server on
        # localhost or the LAN; Chrome asks first (Private Network Access).
        allow_private_network=True,
        max_age=600,
    )

    def check_token(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def check_namespace(request: Request, path_namespace: str | None) -> str | None:
        namespace = path_namespace or request.headers.get(NAMESPACE_HEADER) or None
        if allowed_namespaces is not None and namespace not in allowed_namespaces:
            raise HTTPException(
                status_code=403,
                detail=f"namespace {namespace or '(none)'} is not served here",
            )
        return namespace

    async def apply(
        transform: Transform, request: Request, path_namespace: str | None = None
    ) -> Response:
        check_token(request)
        namespace = check_namespace(request, path_namespace)
        body = await request.body()
        try:
            payloads = json_format.Parse(body, Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise HTTPException(
                status_code=400, detail=f'body is not {{"payloads": [...]}}: {exc}'
            ) from None
        try:
            result = Payloads(payloads=await transform(payloads.payloads))
        except PayloadDecryptionError as exc:
            log.warning("namespace %s: %s", namespace, exc)
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return Response(content=json_format.MessageToJson(result), media_type="application/json")

    @app.post("/encode")
    async def encode(request: Request) -> Response:
        return await apply(codec.encode, request)

    @app.post("/decode")
    async def decode(request: Request) -> Response:
        return await apply(codec.decode, request)

    @app.post("/{namespace}/encode")
    async def encode_in(namespace: str, request: Request) -> Response:
        return await apply(codec.encode, request, namespace)

    @app.post("/{namespace}/decode")
    async def decode_in(namespace: str, request: Request) -> Response:
        return await apply(codec.decode, request, namespace)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app_from_env(codec: PayloadCodec, environ: Mapping[str, str] | None = None) -> FastAPI:
    """build_app with its options read from CODEC_SERVER_* variables (unset or empty: default)."""
    env = os.environ if environ is None else environ
    origins = _split(env.get(ENV_CORS_ORIGINS, "")) or list(DEFAULT_CORS_ORIGINS)
    return build_app(
        codec,
        cors_origins=origins,
        token=env.get(ENV_TOKEN, "").strip() or None,
        namespaces=_split(env.get(ENV_NAMESPACES, "")) or None,
    )

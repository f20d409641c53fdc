"""Gateway settings, read from the worker's environment only.

Keys never travel through workflow inputs or history: the worker reads them here
and the HTTP client adds them to each request. The settings are also the one
list of the secret values the worker holds (``secret_values``), which error
messages and log lines mask with gateway.redaction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from contracts.constants import ENV_CODEC_KEY, ENV_CODEC_OLD_KEYS

ENV_GATEWAY_URL = "GATEWAY_URL"
ENV_GATEWAY_DIALECT = "GATEWAY_DIALECT"
ENV_GATEWAY_API_KEY = "GATEWAY_API_KEY"
ENV_GATEWAY_API_KEY_HEADER = "GATEWAY_API_KEY_HEADER"
ENV_GATEWAY_EXTRA_HEADERS = "GATEWAY_EXTRA_HEADERS"
ENV_AZURE_API_VERSION = "AZURE_API_VERSION"
ENV_GATEWAY_TIMEOUT = "GATEWAY_TIMEOUT_SECONDS"
ENV_GATEWAY_REFUSAL_PATIENCE = "GATEWAY_REFUSAL_PATIENCE_SECONDS"

GATEWAY_ENV_VARS = (
    ENV_GATEWAY_URL,
    ENV_GATEWAY_DIALECT,
    ENV_GATEWAY_API_KEY,
    ENV_GATEWAY_API_KEY_HEADER,
    ENV_GATEWAY_EXTRA_HEADERS,
    ENV_AZURE_API_VERSION,
    ENV_GATEWAY_TIMEOUT,
    ENV_GATEWAY_REFUSAL_PATIENCE,
)

ENV_TEMPORAL_API_KEY = "TEMPORAL_API_KEY"
# Keys of the worker's other clients: never sent to the gateway, but the worker
# holds them, so its messages and logs mask them like the gateway's own.
OTHER_SECRET_ENV_VARS = (ENV_TEMPORAL_API_KEY, ENV_CODEC_KEY, ENV_CODEC_OLD_KEYS)
# The clouds' own secrets, as the object stores (obstore) and their SDKs read them.
CLOUD_SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_OPENAI_API_KEY",
    "OPENAI_API_KEY",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)
# URLs whose user:password@ part is a secret too.
URL_ENV_VARS = ("GATEWAY_URL", "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "TEMPORAL_ADDRESS")

DEFAULT_GATEWAY_URL = "http://localhost:8000"
DEFAULT_AZURE_API_VERSION = "2025-01-01-preview"
# Long enough for a key rotated across a fleet of gateway nodes, or a Kong reload.
DEFAULT_REFUSAL_PATIENCE_SECONDS = 3600.0


class Dialect(StrEnum):
    """How a gateway lays out its routes and expects its key."""

    KONG = "kong"
    OPENAI = "openai"
    AZURE = "azure"


class GatewaySettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    base_url: str = DEFAULT_GATEWAY_URL
    dialect: Dialect = Dialect.KONG
    api_key: SecretStr | None = None
    # Header that carries api_key; None picks the dialect's own
    # (kong: apikey, openai: Authorization Bearer, azure: api-key).
    api_key_header: str | None = None
    extra_headers: dict[str, SecretStr] = Field(default_factory=dict)
    azure_api_version: str = DEFAULT_AZURE_API_VERSION
    timeout_seconds: float = 60.0
    # How long a watch reads on through 401/403 and 404 answers before its job gives up.
    refusal_patience_seconds: float = DEFAULT_REFUSAL_PATIENCE_SECONDS
    # The values of OTHER_SECRET_ENV_VARS (each of BATCH_CODEC_OLD_KEYS on its own).
    other_secrets: tuple[SecretStr, ...] = ()

    def secret_values(self) -> frozenset[str]:
        """Every secret the worker holds: the key, all extra header values, other_secrets.

        All extra header values count, whatever their length: the settings cannot
        tell a tenant name from a token, and gateway.redaction masks short ones too.
        """
        secrets = [*self.extra_headers.values(), *self.other_secrets]
        if self.api_key is not None:
            secrets.append(self.api_key)
        return frozenset(v for v in (s.get_secret_value() for s in secrets) if v)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"gateway URL must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if environ is None else environ
        extra: dict[str, str] = {}
        raw_extra = env.get(ENV_GATEWAY_EXTRA_HEADERS, "").strip()
        if raw_extra:
            try:
                parsed = json.loads(raw_extra)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{ENV_GATEWAY_EXTRA_HEADERS} must be a JSON object of header names to values"
                ) from exc
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
            ):
                raise ValueError(
                    f"{ENV_GATEWAY_EXTRA_HEADERS} must be a JSON object of header names to values"
                )
            extra = parsed
        key = env.get(ENV_GATEWAY_API_KEY, "").strip() or None
        # A key with a newline (a CRLF .env file, a secret with a trailing newline)
        # would make httpx raise with the key, escaped and so unredacted, in the message.
        for name, secret in [(ENV_GATEWAY_API_KEY, key or ""), *extra.items()]:
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in secret):
                label = (
                    name if name == ENV_GATEWAY_API_KEY else f"{ENV_GATEWAY_EXTRA_HEADERS}[{name}]"
                )
                raise ValueError(f"{label} holds a control character (a newline?); remove it")
        extra = {name: value.strip() for name, value in extra.items()}

        def value(name: str, default: str) -> str:
            # Set-but-empty (VAR= in a compose file) means "use the default".
            return env.get(name, "").strip() or default

        raw_dialect = value(ENV_GATEWAY_DIALECT, Dialect.KONG.value)
        try:
            dialect = Dialect(raw_dialect.lower())
        except ValueError:
            choices = ", ".join(d.value for d in Dialect)
            raise ValueError(
                f"{ENV_GATEWAY_DIALECT} must be one of {choices}, got {raw_dialect!r}"
            ) from None
        timeout = _positive_seconds(ENV_GATEWAY_TIMEOUT, value(ENV_GATEWAY_TIMEOUT, "60"))
        patience = _positive_seconds(
            ENV_GATEWAY_REFUSAL_PATIENCE,
            value(ENV_GATEWAY_REFUSAL_PATIENCE, f"{DEFAULT_REFUSAL_PATIENCE_SECONDS:g}"),
        )
        url = value(ENV_GATEWAY_URL, DEFAULT_GATEWAY_URL)
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"{ENV_GATEWAY_URL} must start with http:// or https://, got {url!r}")
        return cls(
            base_url=url,
            dialect=dialect,
            api_key=SecretStr(key) if key else None,
            api_key_header=env.get(ENV_GATEWAY_API_KEY_HEADER, "").strip() or None,
            extra_headers={k: SecretStr(v) for k, v in extra.items()},
            azure_api_version=value(ENV_AZURE_API_VERSION, DEFAULT_AZURE_API_VERSION),
            timeout_seconds=timeout,
            refusal_patience_seconds=patience,
            other_secrets=tuple(SecretStr(v) for v in _other_secrets(env)),
        )


def _positive_seconds(name: str, raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds, got {raw!r}")
    return seconds


def _other_secrets(env: Mapping[str, str]) -> list[str]:
    found: list[str] = []
    for name in (*OTHER_SECRET_ENV_VARS, *CLOUD_SECRET_ENV_VARS):
        value = env.get(name, "").strip()
        if value:
            found.append(value)
        if value and name == ENV_CODEC_OLD_KEYS:
            found.extend(part.strip() for part in value.split(",") if part.strip())
        if value and name == "GOOGLE_SERVICE_ACCOUNT_KEY":
            found.extend(_private_key_of(value))
    for name in URL_ENV_VARS:
        password = urlsplit(env.get(name, "").strip()).password
        if password:
            found.extend({password, unquote(password)})
    return found


def _private_key_of(service_account_json: str) -> list[str]:
    """The key inside a service account's JSON, which a message may quote on its own."""
    try:
        parsed = json.loads(service_account_json)
    except ValueError:
        return []
    key = parsed.get("private_key") if isinstance(parsed, dict) else None
    return [key] if isinstance(key, str) and key else []

"""Where each dialect puts its routes and its key.

kong:   {GATEWAY_URL}/files, /batches; the AI Proxy plugin injects the provider
        key, so the client sends at most a Kong consumer key (apikey header).
openai: {GATEWAY_URL}/v1/files, /v1/batches; Authorization: Bearer KEY.
azure:  {GATEWAY_URL}/openai/files?api-version=...; api-key: KEY.
"""

from __future__ import annotations

from gateway.settings import Dialect, GatewaySettings

_PREFIX = {Dialect.KONG: "", Dialect.OPENAI: "/v1", Dialect.AZURE: "/openai"}
_DEFAULT_KEY_HEADER = {
    Dialect.KONG: "apikey",
    Dialect.OPENAI: "Authorization",
    Dialect.AZURE: "api-key",
}


def route(settings: GatewaySettings, path: str) -> str:
    """The full URL of a route such as "/files" or "/batches/{id}" in this dialect."""
    return f"{settings.base_url}{_PREFIX[settings.dialect]}{path}"


def default_params(settings: GatewaySettings) -> dict[str, str]:
    if settings.dialect is Dialect.AZURE:
        return {"api-version": settings.azure_api_version}
    return {}


def auth_headers(settings: GatewaySettings) -> dict[str, str]:
    headers = {name: value.get_secret_value() for name, value in settings.extra_headers.items()}
    if settings.api_key is not None:
        header = settings.api_key_header or _DEFAULT_KEY_HEADER[settings.dialect]
        key = settings.api_key.get_secret_value()
        headers[header] = f"Bearer {key}" if header.lower() == "authorization" else key
    return headers

"""The standard Temporal settings (environment and TOML profile) reach Client.connect.

Client.connect is replaced by a recorder: no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, TLSConfig
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig

import temporal_client
from codec.aes_gcm import generate_key
from temporal_client import TemporalUnreachableError, connect


@pytest.fixture
def connect_kwargs(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    async def recorder(target_host: str, **kwargs: Any) -> Client:
        calls.append({"target_host": target_host, **kwargs})
        return object()  # type: ignore[return-value]

    monkeypatch.setattr(temporal_client.Client, "connect", recorder)
    return calls


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {
        "cert": tmp_path / "client.pem",
        "key": tmp_path / "client.key",
        "ca": tmp_path / "ca.pem",
        "empty": tmp_path / "empty.toml",
        "config": tmp_path / "temporal.toml",
    }
    paths["cert"].write_bytes(b"-----CLIENT CERT-----")
    paths["key"].write_bytes(b"-----CLIENT KEY-----")
    paths["ca"].write_bytes(b"-----SERVER CA-----")
    paths["empty"].write_text("")
    paths["config"].write_text(
        f"""
[profile.cloud]
address = "ns.acct.tmprl.cloud:7233"
namespace = "ns.acct"
api_key = "profile-api-key"

[profile.cloud-mtls]
address = "mtls.acct.tmprl.cloud:7233"
namespace = "mtls.acct"

[profile.cloud-mtls.tls]
client_cert_path = "{paths["cert"]}"
client_key_path = "{paths["key"]}"
"""
    )
    return paths


async def test_defaults_are_the_local_dev_server(connect_kwargs, files):
    await connect({"TEMPORAL_CONFIG_FILE": str(files["empty"])})
    [call] = connect_kwargs
    assert call["target_host"] == "localhost:7233"
    assert call["namespace"] == "default"
    assert not call.get("tls")
    assert call.get("api_key") is None
    assert call["data_converter"] is pydantic_data_converter
    assert call["runtime"] is None


async def test_address_namespace_and_api_key_from_the_environment(connect_kwargs, files):
    await connect(
        {
            "TEMPORAL_CONFIG_FILE": str(files["empty"]),
            "TEMPORAL_ADDRESS": "ns.acct.tmprl.cloud:7233",
            "TEMPORAL_NAMESPACE": "ns.acct",
            "TEMPORAL_API_KEY": "env-api-key",
        }
    )
    [call] = connect_kwargs
    assert call["target_host"] == "ns.acct.tmprl.cloud:7233"
    assert call["namespace"] == "ns.acct"
    assert call["api_key"] == "env-api-key"
    assert call["tls"] is True  # an API key turns TLS on


async def test_tls_certificate_paths_from_the_environment(connect_kwargs, files):
    await connect(
        {
            "TEMPORAL_CONFIG_FILE": str(files["empty"]),
            "TEMPORAL_ADDRESS": "mtls.example:7233",
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(files["cert"]),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(files["key"]),
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(files["ca"]),
            "TEMPORAL_TLS_SERVER_NAME": "frontend.internal",
        }
    )
    [call] = connect_kwargs
    tls = call["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == b"-----CLIENT CERT-----"
    assert tls.client_private_key == b"-----CLIENT KEY-----"
    assert tls.server_root_ca_cert == b"-----SERVER CA-----"
    assert tls.domain == "frontend.internal"


async def test_a_profile_of_the_toml_file(connect_kwargs, files):
    await connect({"TEMPORAL_CONFIG_FILE": str(files["config"]), "TEMPORAL_PROFILE": "cloud"})
    [call] = connect_kwargs
    assert call["target_host"] == "ns.acct.tmprl.cloud:7233"
    assert call["namespace"] == "ns.acct"
    assert call["api_key"] == "profile-api-key"
    assert call["tls"] is True


async def test_a_profile_with_mtls_certificates(connect_kwargs, files):
    await connect({"TEMPORAL_CONFIG_FILE": str(files["config"]), "TEMPORAL_PROFILE": "cloud-mtls"})
    [call] = connect_kwargs
    assert call["target_host"] == "mtls.acct.tmprl.cloud:7233"
    assert call["namespace"] == "mtls.acct"
    assert call["tls"].client_cert == b"-----CLIENT CERT-----"
    assert call["tls"].client_private_key == b"-----CLIENT KEY-----"


async def test_the_environment_overrides_the_profile(connect_kwargs, files):
    await connect(
        {
            "TEMPORAL_CONFIG_FILE": str(files["config"]),
            "TEMPORAL_PROFILE": "cloud",
            "TEMPORAL_NAMESPACE": "other.acct",
            "TEMPORAL_API_KEY": "rotated-key",
        }
    )
    [call] = connect_kwargs
    assert call["target_host"] == "ns.acct.tmprl.cloud:7233"
    assert (call["namespace"], call["api_key"]) == ("other.acct", "rotated-key")


async def test_the_codec_key_and_the_workers_runtime_are_passed_on(connect_kwargs, files):
    runtime = Runtime(telemetry=TelemetryConfig())
    await connect(
        {"TEMPORAL_CONFIG_FILE": str(files["empty"]), "BATCH_CODEC_KEY": generate_key()},
        runtime=runtime,
    )
    [call] = connect_kwargs
    assert call["runtime"] is runtime
    assert call["data_converter"].payload_codec is not None


async def test_an_unreachable_server_names_the_address(monkeypatch, files):
    async def refuse(target_host: str, **kwargs: Any) -> Client:
        raise RuntimeError("connection refused")

    monkeypatch.setattr(temporal_client.Client, "connect", refuse)
    with pytest.raises(TemporalUnreachableError, match="nowhere:7233 \\(namespace default\\)"):
        await connect(
            {"TEMPORAL_CONFIG_FILE": str(files["empty"]), "TEMPORAL_ADDRESS": "nowhere:7233"}
        )

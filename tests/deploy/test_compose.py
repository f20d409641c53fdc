"""Static checks of the deployment files.

Our machines have no Docker engine, so docker-compose.yml, the Dockerfile and the
Kong declarative config are never run here: these tests hold them to the Compose
specification (JSON Schema), to each other (ports, volumes, mounted files) and to
the names the code reads (gateway.settings, contracts.constants, temporalio.envconfig).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import obstore
import pytest
import yaml
from temporalio.envconfig import ClientConfig, ClientConfigProfile

import contracts.constants as constants
import contracts.names as names
import gateway.settings as gateway_settings
from emulator import knobs as emulator_knobs
from storage.objects import ALLOW_HTTP_ENV_NAMES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
KONG_DIR = ROOT / "deploy" / "kong"
KONG_FILE = KONG_DIR / "kong.yaml"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
# Copy of the Compose specification's schema (see README.md beside this file).
SCHEMA_FILE = Path(__file__).with_name("compose-spec.schema.json")

# Service names of the stack, as other files (docs, scripts) refer to them.
POSTGRES = "postgresql"
SCHEMA_SETUP = "temporal-schema"
SERVER = "temporal"
NAMESPACE_SETUP = "temporal-setup"
UI = "temporal-ui"
EMULATOR = "emulator"
WORKER = "worker"
STARTER = "starter"
KONG_CONFIG = "kong-config"
KONG = "kong"
MINIO = "minio"
MINIO_SETUP = "minio-setup"
WEBHOOKS = "webhooks"
MINIO_SCRIPT = ROOT / "deploy" / "minio" / "create-bucket.sh"

# Environment variables temporalio.envconfig reads (sdk-core
# crates/common/src/envconfig.rs); TEMPORAL_GRPC_META_* is a prefix.
ENVCONFIG_NAMES = frozenset(
    {
        "TEMPORAL_CONFIG_FILE",
        "TEMPORAL_PROFILE",
        "TEMPORAL_ADDRESS",
        "TEMPORAL_NAMESPACE",
        "TEMPORAL_API_KEY",
        "TEMPORAL_TLS",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_TLS_CLIENT_CERT_DATA",
        "TEMPORAL_TLS_CLIENT_KEY_PATH",
        "TEMPORAL_TLS_CLIENT_KEY_DATA",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
        "TEMPORAL_TLS_SERVER_CA_CERT_DATA",
        "TEMPORAL_TLS_SERVER_NAME",
        "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
        "TEMPORAL_CODEC_ENDPOINT",
        "TEMPORAL_CODEC_AUTH",
    }
)
ENVCONFIG_PREFIX = "TEMPORAL_GRPC_META_"

VAULT_ENV_REF = re.compile(r"^\{vault://env/([a-z0-9-]+)\}$")
DECK_ENV_REF = re.compile(r'^\$\{\{\s*env\s+"(DECK_[A-Z0-9_]+)"\s*\}\}$')
SECRET_FIELDS = frozenset(
    {"header_value", "param_value", "key", "password", "token", "api_key", "secret"}
)
# Environment names that hold a secret: their value must come from the shell.
# Every published port binds here: the host's loopback unless STACK_BIND_ADDRESS opens it.
LOCAL_BIND = "${STACK_BIND_ADDRESS:-127.0.0.1}"
SECRET_ENV_NAME = re.compile(r"KEY|SECRET|PASSWORD|PWD|TOKEN|LICENSE")
# Development credentials of Temporal's database, which is not published to the host.
LOCAL_DATABASE_SECRETS = frozenset({"POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_PASSWORD"})


def object_store_env_names() -> frozenset[str]:
    """The environment obstore's stores document reading, plus our plain-HTTP opt-in."""
    stubs = Path(obstore.__file__).parent / "_store"
    documented = set()
    for stub in stubs.glob("*.pyi"):
        documented |= set(re.findall(r"`((?:AWS|AZURE|GOOGLE)_[A-Z0-9_]+)`", stub.read_text()))
    assert {"AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AZURE_STORAGE_ACCOUNT_NAME"} <= documented
    return frozenset(documented | {n for names in ALLOW_HTTP_ENV_NAMES.values() for n in names})


# --- helpers -------------------------------------------------------------------


def code_env_names() -> frozenset[str]:
    """Every environment variable name the worker's own code reads."""
    names = set(gateway_settings.GATEWAY_ENV_VARS)
    for module in (gateway_settings, constants):
        names.update(
            value
            for attr, value in vars(module).items()
            if attr.startswith("ENV_") and isinstance(value, str)
        )
    return frozenset(names)


def is_known_env_name(name: str) -> bool:
    return (
        name in code_env_names()
        or name in ENVCONFIG_NAMES
        or name.startswith(ENVCONFIG_PREFIX)
        or name in object_store_env_names()
    )


_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's variable interpolation, as `docker compose config` applies it."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        if op in (":-", ":?"):
            unset = not current
        else:
            unset = current is None
        if not unset:
            return str(current)
        if op in ("-", ":-"):
            return arg
        if op in ("?", ":?"):
            raise ValueError(f"required variable {name} is missing: {arg}")
        return ""

    return _INTERPOLATION.sub(replace, value)


def service_env(service: Mapping[str, Any]) -> dict[str, str | None]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        env: dict[str, str | None] = {}
        for item in raw:
            name, sep, value = str(item).partition("=")
            env[name] = value if sep else None
        return env
    return {str(k): None if v is None else str(v) for k, v in raw.items()}


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def command_argv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    return [str(part) for part in value]


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    return ref, tag, digest


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume of a service, short or long syntax."""
    mounts = []
    for item in service.get("volumes") or []:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 1:
                mounts.append(("", parts[0]))
            else:
                mounts.append((parts[0], parts[1]))
        else:
            mounts.append((str(item.get("source", "")), str(item["target"])))
    return mounts


def host_path_for(service: Mapping[str, Any], container_path: str) -> Path | None:
    """The repository file a bind mount exposes at container_path, if any."""
    wanted = PurePosixPath(container_path)
    for source, target in volume_mounts(service):
        if not source.startswith((".", "/")):
            continue  # named volume
        target_path = PurePosixPath(target)
        if wanted == target_path or target_path in wanted.parents:
            return (ROOT / source / wanted.relative_to(target_path)).resolve()
    return None


def container_ports(service: Mapping[str, Any]) -> set[int]:
    ports = set()
    for item in service.get("ports") or []:
        if isinstance(item, Mapping):
            ports.add(int(item["target"]))
        else:
            ports.add(int(str(item).split(":")[-1].split("/")[0]))
    return ports


def script_of(service: Mapping[str, Any]) -> str:
    """Text of the repository script a one-shot service runs."""
    argv = command_argv(service.get("entrypoint")) + command_argv(service.get("command"))
    scripts = [arg for arg in argv if arg.endswith(".sh")]
    assert len(scripts) == 1, f"expected one script in {argv}"
    path = host_path_for(service, scripts[0])
    assert path is not None and path.is_file(), f"{scripts[0]} is not mounted from the repository"
    return path.read_text()


def shell_commands(script: str) -> Iterator[str]:
    """Logical lines of a shell script: continuations joined, comments dropped."""
    buffer = ""
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        yield (buffer + stripped).strip()
        buffer = ""


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every scalar in a parsed YAML document."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    # The schema declares draft-07 (its $schema URL lacks the '#' jsonschema keys on).
    assert "draft-07" in schema["$schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def kong_config() -> dict[str, Any]:
    data = yaml.safe_load(KONG_FILE.read_text())
    assert isinstance(data, dict)
    return data


# --- the helpers themselves ----------------------------------------------------


def test_interpolation_follows_compose_rules() -> None:
    assert interpolate("${GATEWAY_URL:-http://emulator:8000}") == "http://emulator:8000"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("$$HOME and $A", {"A": "a"}) == "$HOME and a"
    with pytest.raises(ValueError):
        interpolate("${A:?needed}")


# --- Compose specification -----------------------------------------------------


def test_compose_file_matches_the_compose_specification(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_schema_rejects_a_broken_compose_file(
    compose: dict[str, Any], validator: jsonschema.protocols.Validator
) -> None:
    broken = copy.deepcopy(compose)
    broken["services"][WORKER]["depends_on"][SERVER]["condition"] = "service_ready"
    broken["services"][WORKER]["restart_policy"] = "always"
    assert len(list(validator.iter_errors(broken))) >= 2


# --- services and wiring -------------------------------------------------------


def test_every_service_the_worker_needs_is_there(services: dict[str, dict[str, Any]]) -> None:
    expected_images = {
        POSTGRES: "postgres",
        SCHEMA_SETUP: "temporalio/admin-tools",
        SERVER: "temporalio/server",
        NAMESPACE_SETUP: "temporalio/admin-tools",
        UI: "temporalio/ui",
    }
    for name, repository in expected_images.items():
        assert name in services, f"missing service {name}"
        assert split_image(services[name]["image"])[0] == repository, name
    for name in (EMULATOR, WORKER):
        assert name in services, f"missing service {name}"
        assert services[name].get("build"), f"{name} must be built from our Dockerfile"


def test_auto_setup_image_is_not_used(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        repository = split_image(service.get("image", ""))[0]
        assert repository != "temporalio/auto-setup", f"{name} uses the deprecated auto-setup"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert service.get("build"), f"{name} has neither image nor build"
            continue
        _, tag, digest = split_image(interpolate(image))
        if service.get("build"):
            assert tag and tag != "latest", f"{name}: name our built image with a tag"
            continue
        assert digest or tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: image {image} uses latest"
        if not digest:
            # x.y versions, or MinIO's dated releases (RELEASE.2025-09-07T16-13-09Z).
            version = re.search(r"\d+\.\d+", tag or "") or re.fullmatch(
                r"RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z", tag or ""
            )
            assert version, f"{name}: {image} is not a version tag"


def test_temporal_server_and_admin_tools_share_a_version(
    services: dict[str, dict[str, Any]],
) -> None:
    server_tag = split_image(services[SERVER]["image"])[1]
    for name in (SCHEMA_SETUP, NAMESPACE_SETUP):
        assert split_image(services[name]["image"])[1] == server_tag, name


def test_postgres_has_healthcheck_and_volume(services: dict[str, dict[str, Any]]) -> None:
    postgres = services[POSTGRES]
    assert "pg_isready" in " ".join(command_argv(postgres["healthcheck"]["test"]))
    sources = {source for source, target in volume_mounts(postgres)}
    assert any(source and not source.startswith((".", "/")) for source in sources)


def test_schema_setup_creates_both_databases(services: dict[str, dict[str, Any]]) -> None:
    setup = services[SCHEMA_SETUP]
    assert depends_on(setup) == {POSTGRES: "service_healthy"}
    commands = list(shell_commands(script_of(setup)))
    text = "\n".join(commands)
    assert "temporal-sql-tool --plugin postgres12" in text
    assert re.search(r"setup-schema -v 0\.0", text)
    assert re.search(r"update-schema -d \"?\$SCHEMA_DIR/\$2/versioned", text)
    assert "SCHEMA_DIR=/etc/temporal/schema/postgresql/v12" in commands
    databases: dict[str, str] = {}
    for command in commands:
        if match := re.fullmatch(r"setup_database (\S+) (\S+)", command):
            databases[match.group(1)] = match.group(2)
    assert databases == {"temporal": "temporal", "temporal_visibility": "visibility"}


def test_schema_setup_and_server_use_the_same_database(
    services: dict[str, dict[str, Any]],
) -> None:
    schema_env = service_env(services[SCHEMA_SETUP])
    server_env = service_env(services[SERVER])
    postgres_env = service_env(services[POSTGRES])
    for key in ("DB", "DB_PORT", "POSTGRES_SEEDS", "POSTGRES_USER", "POSTGRES_PWD"):
        assert schema_env[key] == server_env[key], key
    assert server_env["DB"] == "postgres12"
    assert server_env["POSTGRES_SEEDS"] == POSTGRES
    assert server_env["POSTGRES_USER"] == postgres_env["POSTGRES_USER"]
    assert server_env["POSTGRES_PWD"] == postgres_env["POSTGRES_PASSWORD"]
    assert schema_env["SQL_PASSWORD"] == postgres_env["POSTGRES_PASSWORD"]


def test_server_starts_after_schema_and_is_healthchecked(
    services: dict[str, dict[str, Any]],
) -> None:
    server = services[SERVER]
    assert depends_on(server) == {SCHEMA_SETUP: "service_completed_successfully"}
    assert "7233" in " ".join(command_argv(server["healthcheck"]["test"]))
    assert 7233 in container_ports(server)
    assert service_env(server)["BIND_ON_IP"] == "0.0.0.0"


def test_dynamic_config_file_referenced_by_compose_exists(
    services: dict[str, dict[str, Any]],
) -> None:
    server = services[SERVER]
    relative = service_env(server)["DYNAMIC_CONFIG_FILE_PATH"]
    assert relative == "config/dynamicconfig/development-sql.yaml"
    # The server image resolves it against its working directory, /etc/temporal.
    host_file = host_path_for(server, f"/etc/temporal/{relative}")
    assert host_file == ROOT / "deploy/temporal/dynamicconfig/development-sql.yaml"
    assert host_file.is_file()
    config = yaml.safe_load(host_file.read_text())
    assert isinstance(config, dict) and config
    for key, values in config.items():
        assert isinstance(values, list) and values, key
        assert all("value" in entry for entry in values), key


def test_namespace_setup_registers_exactly_the_search_attributes(
    services: dict[str, dict[str, Any]],
) -> None:
    setup = services[NAMESPACE_SETUP]
    assert depends_on(setup) == {SERVER: "service_healthy"}
    commands = list(shell_commands(script_of(setup)))
    creates = [c for c in commands if "temporal operator search-attribute create" in c]
    assert len(creates) == 1
    pairs = re.findall(r"--name (\S+) --type (\S+)", creates[0])
    assert dict(pairs) == names.SEARCH_ATTRIBUTES
    assert len(pairs) == len(names.SEARCH_ATTRIBUTES)
    # The already-registered check names the same attributes.
    loops = [c for c in commands if c.startswith("for name in ")]
    assert len(loops) == 1
    assert loops[0].removeprefix("for name in ").removesuffix("; do").split() == list(
        names.SEARCH_ATTRIBUTES
    )


def test_namespace_setup_creates_the_workers_namespace_with_retries(
    services: dict[str, dict[str, Any]],
) -> None:
    setup = services[NAMESPACE_SETUP]
    env = service_env(setup)
    worker_env = service_env(services[WORKER])
    assert env["TEMPORAL_NAMESPACE"] == worker_env["TEMPORAL_NAMESPACE"]
    assert env["TEMPORAL_ADDRESS"] == worker_env["TEMPORAL_ADDRESS"]
    script = script_of(setup)
    assert 'NAMESPACE="${TEMPORAL_NAMESPACE:-default}"' in script
    assert 'ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"' in script
    commands = list(shell_commands(script))
    assert any(c.startswith("retry temporal operator cluster health --address") for c in commands)
    assert any(
        c.startswith("retry temporal operator namespace create --namespace") for c in commands
    )
    assert "until " in script and "sleep " in script


def test_ui_on_port_8080(services: dict[str, dict[str, Any]]) -> None:
    ui = services[UI]
    assert f"{LOCAL_BIND}:8080:8080" in [str(p) for p in ui["ports"]]
    assert service_env(ui)["TEMPORAL_ADDRESS"] == f"{SERVER}:7233"
    assert depends_on(ui) == {SERVER: "service_healthy"}


def test_emulator_runs_from_our_image_on_port_8000(services: dict[str, dict[str, Any]]) -> None:
    emulator = services[EMULATOR]
    argv = command_argv(emulator.get("command"))
    assert argv == [
        "python",
        "-m",
        "emulator",
        "--host",
        "0.0.0.0",
        "--port",
        "8000",
        "--data-dir",
        "/data/emulator",
    ]
    assert emulator["image"] == services[WORKER]["image"]
    assert 8000 in container_ports(emulator)
    assert "/_emulator/health" in " ".join(command_argv(emulator["healthcheck"]["test"]))
    # Only variables the emulator reads: one per knob, plus its server settings.
    readable = {emulator_knobs.env_name(field) for field in emulator_knobs.Knobs.model_fields}
    readable |= {"EMULATOR_HOST", "EMULATOR_PORT", "EMULATOR_DATA_DIR", "EMULATOR_LOG_LEVEL"}
    env = service_env(emulator)
    assert env and set(env) <= readable, sorted(set(env) - readable)


def test_worker_is_built_and_wired(services: dict[str, dict[str, Any]]) -> None:
    worker = services[WORKER]
    build = worker["build"]
    assert build["context"] == "."
    assert (ROOT / build["context"] / build.get("dockerfile", "Dockerfile")) == DOCKERFILE
    assert command_argv(worker.get("command")) == ["python", "worker.py"]
    deps = depends_on(worker)
    assert deps[SERVER] == "service_healthy"
    assert deps[EMULATOR] == "service_healthy"
    assert deps[NAMESPACE_SETUP] == "service_completed_successfully"


def test_worker_environment_uses_only_names_the_code_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    env = service_env(services[WORKER])
    unknown = sorted(name for name in env if not is_known_env_name(name))
    assert not unknown, f"worker environment names no code reads: {unknown}"
    for name in env:
        if name.startswith(("GATEWAY_", "WORKER_", "TEMPORAL_")):
            assert is_known_env_name(name), name
    # Every gateway setting can be given to the worker of the stack.
    assert set(gateway_settings.GATEWAY_ENV_VARS) <= set(env)


def test_worker_reaches_services_that_exist(services: dict[str, dict[str, Any]]) -> None:
    env = service_env(services[WORKER])
    gateway_url = env[gateway_settings.ENV_GATEWAY_URL]
    assert gateway_url, "GATEWAY_URL must be set"
    url = urlsplit(interpolate(gateway_url))
    assert url.scheme == "http" and url.hostname == EMULATOR
    assert url.port in container_ports(services[EMULATOR])
    assert str(url.port) in command_argv(services[EMULATOR]["command"])

    address = env["TEMPORAL_ADDRESS"]
    assert address, "TEMPORAL_ADDRESS must be set"
    host, _, port = interpolate(address).rpartition(":")
    assert host == SERVER and host in services
    assert int(port) in container_ports(services[SERVER])

    assert env[constants.ENV_TASK_QUEUE] == names.TASK_QUEUE
    dialect = interpolate(env[gateway_settings.ENV_GATEWAY_DIALECT] or "")
    assert dialect in {d.value for d in gateway_settings.Dialect}
    gateway_settings.GatewaySettings.from_env(
        {k: interpolate(v) for k, v in env.items() if v is not None}
    )


def test_worker_metrics_port_is_published(services: dict[str, dict[str, Any]]) -> None:
    worker = services[WORKER]
    port = int(service_env(worker)[constants.ENV_METRICS_PORT] or 0)
    assert port == 9464
    assert port in container_ports(worker)
    assert f":{port}/" in " ".join(command_argv(worker["healthcheck"]["test"]))


@pytest.mark.parametrize(
    ("name", "field"),
    [("TEMPORAL_ADDRESS", "address"), ("TEMPORAL_NAMESPACE", "namespace")],
)
def test_temporal_names_of_the_stack_are_read_by_envconfig(
    services: dict[str, dict[str, Any]], name: str, field: str
) -> None:
    value = service_env(services[WORKER])[name]
    assert value
    profile = ClientConfigProfile.load(disable_file=True, override_env_vars={name: value})
    assert getattr(profile, field) == value
    assert name in ENVCONFIG_NAMES


def test_envconfig_names_list_matches_the_sdk() -> None:
    probes = {
        "TEMPORAL_ADDRESS": ("address", "h:1"),
        "TEMPORAL_NAMESPACE": ("namespace", "ns"),
        "TEMPORAL_API_KEY": ("api_key", "k"),
    }
    for name, (field, value) in probes.items():
        assert name in ENVCONFIG_NAMES
        profile = ClientConfigProfile.load(disable_file=True, override_env_vars={name: value})
        assert getattr(profile, field) == value
    tls = ClientConfigProfile.load(
        disable_file=True, override_env_vars={"TEMPORAL_TLS_SERVER_NAME": "example"}
    )
    assert tls.tls is not None and tls.tls.server_name == "example"
    meta = ClientConfigProfile.load(
        disable_file=True, override_env_vars={f"{ENVCONFIG_PREFIX}X_TEAM": "a"}
    )
    assert meta.grpc_meta == {"x-team": "a"}


def test_starter_runs_the_cli_with_the_workers_temporal_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    starter = services[STARTER]
    assert starter.get("profiles") == ["tools"]
    argv = command_argv(starter.get("entrypoint"))
    assert argv == ["python", "/app/starter.py"]
    # It runs in the folder of the compose file: local inputs there, results back there.
    assert (".", starter["working_dir"]) in volume_mounts(starter)
    assert starter["image"] == services[WORKER]["image"]
    env = service_env(starter)
    worker_env = service_env(services[WORKER])
    for name in env:
        assert is_known_env_name(name), name
        assert env[name] == worker_env[name], f"{name} differs between starter and worker"
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", constants.ENV_TASK_QUEUE):
        assert name in env
    # Payloads the starter encrypts must be readable by the worker.
    assert constants.ENV_CODEC_KEY in env
    # Gateway keys stay with the worker.
    assert not any(name.startswith("GATEWAY_") for name in env)


def test_workers_are_replicas_that_share_no_volume(services: dict[str, dict[str, Any]]) -> None:
    worker = services[WORKER]
    assert worker["deploy"]["replicas"] >= 2
    assert volume_mounts(worker) == [], "workers keep job files in the object store, not on disk"
    assert constants.ENV_DATA_DIR not in service_env(worker)
    # One metrics port on the host per replica.
    [ports] = worker["ports"]
    first, last = (int(p) for p in ports.removeprefix(f"{LOCAL_BIND}:").split(":")[0].split("-"))
    assert last - first + 1 >= worker["deploy"]["replicas"]


def test_workers_and_starter_reach_minio_through_the_standard_aws_names(
    services: dict[str, dict[str, Any]],
) -> None:
    minio = services[MINIO]
    for name in (WORKER, STARTER):
        env = service_env(services[name])
        endpoint = urlsplit(interpolate(env["AWS_ENDPOINT_URL"] or ""))
        assert (endpoint.scheme, endpoint.hostname) == ("http", MINIO)
        assert endpoint.port in container_ports(minio)
        assert interpolate(env["AWS_ALLOW_HTTP"] or "") == "true", (
            "MinIO in the stack is plain HTTP"
        )
        assert interpolate(env["AWS_REGION"] or "")
        # Keys pass through from the shell: no value in this file.
        assert env["AWS_ACCESS_KEY_ID"] is None and env["AWS_SECRET_ACCESS_KEY"] is None
        assert interpolate(env[constants.ENV_BATCH_STORE] or "").startswith("s3://")
        assert depends_on(services[name])[MINIO_SETUP] == "service_completed_successfully"
    # MinIO's admin is another pair, required from the shell, that workers never get.
    minio_env = service_env(minio)
    assert (minio_env["MINIO_ROOT_USER"] or "").startswith("${MINIO_ROOT_USER:?")
    assert (minio_env["MINIO_ROOT_PASSWORD"] or "").startswith("${MINIO_ROOT_PASSWORD:?")
    with pytest.raises(ValueError, match="MINIO_ROOT_USER"):
        interpolate(minio_env["MINIO_ROOT_USER"] or "")
    for name in (WORKER, STARTER):
        assert not {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} & set(service_env(services[name]))
    assert 9000 in container_ports(minio)
    assert " ".join(command_argv(minio["healthcheck"]["test"])) == "CMD mc ready local"


def test_minio_setup_creates_the_bucket_batch_store_names(
    services: dict[str, dict[str, Any]],
) -> None:
    setup = services[MINIO_SETUP]
    assert split_image(setup["image"])[0] == "minio/mc"
    assert split_image(services[MINIO]["image"])[0] == "minio/minio"
    assert depends_on(setup) == {MINIO: "service_healthy"}
    assert host_path_for(setup, "/scripts/create-bucket.sh") == MINIO_SCRIPT
    script = script_of(setup)
    commands = list(shell_commands(script))
    assert 'BUCKET="${STORE#s3://}"' in commands and 'BUCKET="${BUCKET%%/*}"' in commands
    assert 'mc mb --ignore-existing "store/$BUCKET"' in commands
    assert any('"$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"' in c for c in commands)
    setup_env, worker_env = service_env(setup), service_env(services[WORKER])
    for name in (constants.ENV_BATCH_STORE, "AWS_ENDPOINT_URL"):
        assert setup_env[name] == worker_env[name], f"{name}: the bucket made is not the one used"


def test_no_literal_secrets_in_the_compose_file(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for service_name, service in services.items():
        for name, value in service_env(service).items():
            if not SECRET_ENV_NAME.search(name) or name in LOCAL_DATABASE_SECRETS:
                continue
            checked += 1
            assert value is None or re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value), (
                f"{service_name}: {name} holds a literal value"
            )
            if value is not None and ":?" not in value:
                assert interpolate(value) == "", f"{service_name}: {name} has a default value"
    assert checked >= 10, "no secret found: is the check still looking?"


def test_emulator_keeps_its_own_state(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    mounts = {target: source for source, target in volume_mounts(services[EMULATOR])}
    assert mounts["/data"] in compose["volumes"]
    emulator_argv = command_argv(services[EMULATOR]["command"])
    data_dir = PurePosixPath(emulator_argv[emulator_argv.index("--data-dir") + 1])
    assert PurePosixPath("/data") in data_dir.parents
    for name, service in services.items():
        if name != EMULATOR:
            assert mounts["/data"] not in {src for src, _ in volume_mounts(service)}, name


def test_only_the_stack_services_run_without_a_profile(
    services: dict[str, dict[str, Any]],
) -> None:
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {
        POSTGRES,
        SCHEMA_SETUP,
        SERVER,
        NAMESPACE_SETUP,
        UI,
        EMULATOR,
        MINIO,
        MINIO_SETUP,
        WORKER,
    }


# --- webhooks profile ----------------------------------------------------------


def test_webhooks_profile_runs_the_receiver_on_localhost_with_the_workers_temporal(
    services: dict[str, dict[str, Any]],
) -> None:
    receiver = services[WEBHOOKS]
    assert receiver["profiles"] == ["webhooks"]
    assert command_argv(receiver["command"]) == ["python", "-m", "webhooks"]
    env = service_env(receiver)
    worker_env = service_env(services[WORKER])
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "BATCH_CODEC_KEY"):
        assert env[name] == worker_env[name], name
    assert env[constants.ENV_WEBHOOK_SECRET] is None, "the secret comes from the shell"
    port = int(str(env[constants.ENV_WEBHOOK_PORT]))
    assert [str(p) for p in receiver["ports"]] == [f"{LOCAL_BIND}:{port}:{port}"]
    assert f"localhost:{port}/healthz" in " ".join(receiver["healthcheck"]["test"])
    for name in env:
        assert is_known_env_name(name), name
    assert constants.ENV_WEBHOOK_FALLBACK_POLL in worker_env
    emulator_env = service_env(services[EMULATOR])
    assert emulator_env["EMULATOR_WEBHOOK_SECRET"] == "${WEBHOOK_SECRET:-}"
    assert "EMULATOR_WEBHOOK_URL" in emulator_env
    assert "webhook_url" in emulator_knobs.Knobs.model_fields


# --- kong profile --------------------------------------------------------------


def test_kong_profile_runs_kong_gateway_311_or_later_db_less(
    services: dict[str, dict[str, Any]],
) -> None:
    kong = services[KONG]
    assert kong.get("profiles") == ["kong"]
    repository, tag, _ = split_image(kong["image"])
    assert repository == "kong/kong-gateway"
    assert tag is not None
    version = tuple(int(part) for part in re.findall(r"\d+", tag)[:2])
    assert version >= (3, 11), f"files/batches route types need Kong 3.11+, got {tag}"
    env = service_env(kong)
    assert env["KONG_DATABASE"] == "off"
    assert env["KONG_PROXY_LISTEN"] == "0.0.0.0:8000"
    # Licence and Azure key come from the shell, never from this file.
    assert "KONG_LICENSE_DATA" in env and env["KONG_LICENSE_DATA"] is None
    assert depends_on(kong) == {KONG_CONFIG: "service_completed_successfully"}


def test_kong_loads_the_rendered_decK_file(services: dict[str, dict[str, Any]]) -> None:
    kong, render = services[KONG], services[KONG_CONFIG]
    assert render.get("profiles") == ["kong"]
    assert split_image(render["image"])[0] == "kong/deck"
    argv = command_argv(render["command"])
    assert argv[:3] == ["file", "render", "--populate-env-vars"]
    source, output = argv[3], argv[argv.index("--output-file") + 1]
    assert host_path_for(render, source) == KONG_FILE
    # The rendered file lands in a named volume that Kong mounts at its config path.
    render_mounts = {target: src for src, target in volume_mounts(render)}
    kong_mounts = {target: src for src, target in volume_mounts(kong)}
    declarative = PurePosixPath(service_env(kong)["KONG_DECLARATIVE_CONFIG"] or "")
    out = PurePosixPath(output)
    assert render_mounts[str(out.parent)] == kong_mounts[str(declarative.parent)]
    assert out.name == declarative.name


def test_environment_of_the_kong_file_reaches_kong(
    services: dict[str, dict[str, Any]], kong_config: dict[str, Any]
) -> None:
    deck_vars, vault_vars = set(), set()
    for _, value in walk(kong_config):
        if isinstance(value, str):
            if match := DECK_ENV_REF.match(value):
                deck_vars.add(match.group(1))
            if match := VAULT_ENV_REF.match(value):
                # Kong's env vault: upper case, '-' becomes '_'.
                vault_vars.add(match.group(1).upper().replace("-", "_"))
    assert deck_vars | {"DECK_KONG_CONSUMER_KEY"} == set(service_env(services[KONG_CONFIG]))
    assert vault_vars == {"AZURE_OPENAI_API_KEY"}
    kong_env = service_env(services[KONG])
    for name in vault_vars:
        assert name in kong_env and kong_env[name] is None, name


def test_worker_can_be_pointed_at_kong(services: dict[str, dict[str, Any]]) -> None:
    # Documented override: GATEWAY_URL=http://kong:8000 docker compose --profile kong up
    raw = service_env(services[WORKER])[gateway_settings.ENV_GATEWAY_URL] or ""
    url = urlsplit(interpolate(raw, {"GATEWAY_URL": "http://kong:8000"}))
    assert url.hostname == KONG and url.hostname in services
    listen_port = int((service_env(services[KONG])["KONG_PROXY_LISTEN"] or "").rsplit(":", 1)[1])
    assert url.port == listen_port
    assert "GATEWAY_URL=http://kong:8000" in DEPLOY_DOC.read_text()


# --- Kong declarative config ---------------------------------------------------


def test_kong_file_mirrors_the_azure_batches_how_to(kong_config: dict[str, Any]) -> None:
    assert kong_config["_format_version"] == "3.0"
    by_path: dict[str, tuple[str, dict[str, Any]]] = {}
    for service in kong_config["services"]:
        plugins = [p for p in service.get("plugins", []) if p["name"] == "ai-proxy"]
        assert len(plugins) == 1, service["name"]
        for route in service.get("routes", []):
            for path in route["paths"]:
                by_path[path] = (service["name"], plugins[0]["config"])
    assert set(by_path) == {"/files", "/batches"}
    expected = {
        "/files": ("files-service", "llm/v1/files"),
        "/batches": ("batches-service", "llm/v1/batches"),
    }
    for path, (service_name, route_type) in expected.items():
        name, config = by_path[path]
        assert name == service_name
        assert config["route_type"] == route_type
        model = config["model"]
        assert model["provider"] == "azure"
        options = model["options"]
        assert options["azure_api_version"] == gateway_settings.DEFAULT_AZURE_API_VERSION
        assert options["azure_api_version"] == "2025-01-01-preview"
        assert DECK_ENV_REF.match(options["azure_instance"])
        assert DECK_ENV_REF.match(options["azure_deployment_id"])
        assert config["auth"]["header_name"]
        assert VAULT_ENV_REF.match(config["auth"]["header_value"])


@pytest.mark.parametrize("path", sorted(KONG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_kong_files_hold_no_literal_secrets(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert document["_format_version"] == "3.0"
    checked = 0
    for dotted, value in walk(document):
        field = dotted.rsplit(".", 1)[-1].split("[", 1)[0]
        if field in SECRET_FIELDS:
            checked += 1
            assert isinstance(value, str), dotted
            assert VAULT_ENV_REF.match(value) or DECK_ENV_REF.match(value), (
                f"{path.name}: {dotted} holds a literal value"
            )
    assert checked, f"{path.name}: no secret field found, is the check still looking?"
    text = path.read_text()
    assert not re.search(r"\bsk-[A-Za-z0-9_-]{16,}", text)
    assert not re.search(r"\b[0-9a-fA-F]{32,}\b", text)


# --- Dockerfile and build context ----------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    instructions = []
    buffer = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        keyword, _, rest = (buffer + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        buffer = ""
    return instructions


def test_dockerfile_base_image_is_pinned_python_311() -> None:
    bases = [rest.split()[0] for keyword, rest in dockerfile_instructions() if keyword == "FROM"]
    assert bases
    for base in bases:
        repository, tag, digest = split_image(base)
        assert repository == "python"
        assert tag and tag != "latest"
        assert re.fullmatch(r"3\.11\.\d+-slim-\w+", tag), f"not an exact version: {base}"
        assert digest is None or digest.startswith("sha256:")


def test_dockerfile_runs_as_non_root_and_starts_the_worker() -> None:
    instructions = dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image must switch to a non-root USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    keywords = [keyword for keyword, _ in instructions]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert json.loads(dict(instructions)["CMD"]) == ["python", "worker.py"]
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert re.search(r"pip install .*(-r|--requirement) requirements\.txt", runs)
    copies = [rest for keyword, rest in instructions if keyword == "COPY"]
    assert copies[0].split()[0] == "requirements.txt"


def test_dockerfile_compiles_the_sources_it_copies() -> None:
    """PYTHONDONTWRITEBYTECODE stops run-time caching: without bytecode in the image,
    the workflow sandbox compiles the workflow's modules for every job it starts."""
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    copied = max(i for i, (k, rest) in enumerate(instructions) if k == "COPY" and rest == ". .")
    compiled = [
        i for i, (k, rest) in enumerate(instructions) if k == "RUN" and "compileall" in rest
    ]
    assert compiled and compiled[-1] > copied, "compile after the sources are copied"
    assert keywords.index("USER") > compiled[-1]


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    patterns = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv", ".local", ".env", "tests"):
        assert required in patterns, required
    for needed in ("requirements.txt", "worker.py", "starter.py", "emulator", "gateway"):
        assert needed not in patterns, f"{needed} is needed in the image"


# --- docs ----------------------------------------------------------------------


def test_deploy_doc_covers_the_stack() -> None:
    text = DEPLOY_DOC.read_text()
    for needle in (
        "docker compose up --build",
        "--profile kong",
        "licence",
        "7233",
        "8080",
        "8000",
        "9464",
        "WORKER_METRICS_PORT",
        "tests/deploy",
        "TEMPORAL_API_KEY",
        "TEMPORAL_TLS_CLIENT_CERT_PATH",
        "TEMPORAL_PROFILE",
        "tmprl.cloud:7233",
    ):
        assert needle in text, needle


def test_temporal_cloud_toml_example_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DEPLOY_DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    config = ClientConfig.load(config_source=blocks[0], config_file_strict=True)
    assert config.profiles
    for name, profile in config.profiles.items():
        assert profile.address and profile.address.endswith(".tmprl.cloud:7233"), name
        assert profile.namespace, name


def test_codec_profile_serves_the_codec_the_ui_is_pointed_at(
    services: dict[str, dict[str, Any]],
) -> None:
    from codec.server import ENV_CORS_ORIGINS, ENV_NAMESPACES, ENV_TOKEN
    from contracts.constants import ENV_CODEC_KEY, ENV_CODEC_OLD_KEYS

    codec = services["codec-server"]
    assert codec.get("profiles") == ["codec"]
    assert codec["command"][:4] == ["python", "-m", "codec", "serve"]
    port = codec["command"][codec["command"].index("--port") + 1]
    assert f"{LOCAL_BIND}:{port}:{port}" in codec["ports"]
    known = {ENV_CODEC_KEY, ENV_CODEC_OLD_KEYS, ENV_TOKEN, ENV_CORS_ORIGINS, ENV_NAMESPACES}
    assert set(codec["environment"]) <= known
    assert ENV_CODEC_KEY in codec["environment"]
    assert "http://localhost:8080" in codec["environment"][ENV_CORS_ORIGINS]
    assert "TEMPORAL_CODEC_ENDPOINT" in services["temporal-ui"]["environment"]


# --- private by default (docs/security.md) --------------------------------------


def test_every_published_port_is_on_the_hosts_loopback_unless_opened(
    services: dict[str, dict[str, Any]],
) -> None:
    published = 0
    for name, service in services.items():
        for item in service.get("ports") or []:
            published += 1
            assert isinstance(item, str) and item.startswith(f"{LOCAL_BIND}:"), (name, item)
            assert interpolate(item).startswith("127.0.0.1:"), (name, item)
            opened = interpolate(item, {"STACK_BIND_ADDRESS": "0.0.0.0"})
            assert opened.startswith("0.0.0.0:"), (name, item)
    assert published >= 7


def test_the_codec_server_in_the_stack_is_reachable_from_this_machine_alone(
    services: dict[str, dict[str, Any]],
) -> None:
    from codec.server import is_loopback

    argv = command_argv(services["codec-server"]["command"])
    host = argv[argv.index("--host") + 1]
    # Without a token only because the flag names the container's own address,
    # whose published port binds the host's loopback.
    assert argv[argv.index("--without-token-on") + 1] == host
    assert not is_loopback(host)
    [port] = services["codec-server"]["ports"]
    assert interpolate(port).startswith("127.0.0.1:")


def test_kong_loads_key_auth_with_the_consumer_key_from_the_shell(
    services: dict[str, dict[str, Any]],
) -> None:
    render = services[KONG_CONFIG]
    argv = command_argv(render["command"])
    sources = argv[3 : argv.index("--output-file")]
    assert [host_path_for(render, source) for source in sources] == [
        KONG_FILE,
        KONG_DIR / "key-auth.yaml",
    ]
    key_auth = yaml.safe_load((KONG_DIR / "key-auth.yaml").read_text())
    guarded = {p["service"] for p in key_auth["plugins"] if p["name"] == "key-auth"}
    kong_config = yaml.safe_load(KONG_FILE.read_text())
    assert guarded == {service["name"] for service in kong_config["services"]}
    assert service_env(render)["DECK_KONG_CONSUMER_KEY"] is None, "from the shell, never here"


def test_workers_sign_in_to_minio_as_a_user_allowed_one_bucket() -> None:
    commands = list(shell_commands(MINIO_SCRIPT.read_text()))
    # The stack's MinIO: the set-up signs in as its admin (alias "minio"), the
    # workers get a user of their own; AWS S3 (alias "store") keeps its own keys.
    assert any(
        c.startswith(
            'until mc alias set minio "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"'
        )
        for c in commands
    )
    assert 'mc admin user add minio "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"' in commands
    script = MINIO_SCRIPT.read_text()
    assert '"arn:aws:s3:::$BUCKET"' in script and '"arn:aws:s3:::$BUCKET/*"' in script
    assert "arn:aws:s3:::*" not in script
    assert any(c.startswith('mc admin policy attach minio "$POLICY" --user') for c in commands)
    assert "AWS_ACCESS_KEY_ID is MinIO's admin" in script


def test_the_workers_allow_list_is_the_store_they_are_given(
    services: dict[str, dict[str, Any]],
) -> None:
    env = service_env(services[WORKER])
    allowed = interpolate(env[constants.ENV_ALLOWED_LOCATIONS] or "")
    assert allowed == interpolate(env[constants.ENV_BATCH_STORE] or "")

"""Real object-store servers for the storage tests: moto's S3 server and Azurite.

One of each serves the whole session; every test gets its own bucket or
container, and the standard environment variables (AWS_*, AZURE_STORAGE_*)
that point a fresh ObjectStorage at it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devstack.storage_servers import Azurite, MotoServer
from storage import ObjectStorage

_names = itertools.count()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def moto_checking_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto-auth"), check_credentials=True) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@dataclass
class Backend:
    """One bucket (or container) on one server, and the environment that reaches it."""

    scheme: str
    bucket: str
    env: dict[str, str]
    server: MotoServer | Azurite

    def location(self, key: str) -> str:
        return f"{self.scheme}://{self.bucket}/{key}"

    def uploads_in_flight(self) -> int:
        if isinstance(self.server, MotoServer):
            return self.server.incomplete_uploads(self.bucket)
        return self.server.uncommitted_blobs(self.bucket)


@pytest.fixture(params=["s3", "az"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    bucket = f"test-{next(_names)}"
    server: MotoServer | Azurite
    if request.param == "s3":
        server = request.getfixturevalue("moto")
        server.create_bucket(bucket)
    else:
        server = request.getfixturevalue("azurite")
        server.create_container(bucket)
    env = server.env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield Backend(request.param, bucket, env, server)


@pytest.fixture
def store(backend: Backend) -> ObjectStorage:
    """Built after the environment is set: stores read it when first used."""
    return ObjectStorage()

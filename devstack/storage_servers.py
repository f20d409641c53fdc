"""Local object-store servers for tests and benchmarks: moto's S3 server and Azurite.

Each runs as a subprocess on 127.0.0.1 and a free port, and hands back the
standard environment variables that point a store at it (AWS_*, AZURE_STORAGE_*),
so code under test configures itself exactly as it would against a cloud.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"

# Azurite's documented development account (public, the same in every install).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """A subprocess listening on 127.0.0.1:port, up once an HTTP request gets any answer."""

    name = "server"

    def __init__(self, workdir: Path, *, startup_timeout: float = 60.0) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def extra_env(self) -> dict[str, str]:
        return {}

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.extra_env()},
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self._log.name}")
            try:
                httpx.get(self.url, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not listening on {self.url} after {self.startup_timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class MotoServer(_Server):
    """moto's standalone S3 API server; with check_credentials, unknown keys get 403."""

    name = "moto"

    def __init__(self, workdir: Path, *, check_credentials: bool = False) -> None:
        super().__init__(workdir)
        self.check_credentials = check_credentials

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    def extra_env(self) -> dict[str, str]:
        # moto enforces signatures and IAM only when told; 0 unauthenticated calls.
        return {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} if self.check_credentials else {}

    def env(self, *, access_key: str = "testing", secret_key: str = "testing") -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": secret_key,
        }

    def create_bucket(self, bucket: str) -> None:
        # moto without check_credentials accepts unsigned calls.
        httpx.put(f"{self.url}/{bucket}", timeout=10.0).raise_for_status()

    def incomplete_uploads(self, bucket: str) -> int:
        """Multipart uploads begun and neither completed nor aborted."""
        page = httpx.get(f"{self.url}/{bucket}?uploads", timeout=10.0).raise_for_status()
        return page.text.count("<Upload>")


class Azurite(_Server):
    """Azure's Blob Storage emulator, from the npm package the Makefile installs."""

    name = "azurite"

    def command(self) -> list[str]:
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} is missing: run `npm ci` in {ROOT} (make does)")
        return [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(self.workdir / "data"),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]

    def env(self, *, key: str = AZURITE_KEY) -> dict[str, str]:
        return {
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURITE_BLOB_STORAGE_URL": self.url,
            "AZURE_STORAGE_ACCOUNT_NAME": AZURITE_ACCOUNT,
            "AZURE_STORAGE_ACCOUNT_KEY": key,
        }

    def create_container(self, container: str) -> None:
        self._signed("PUT", container, {"restype": "container"}).raise_for_status()

    def uncommitted_blobs(self, container: str) -> int:
        """Blobs with blocks staged but no block list committed: uploads in flight."""
        listing = self._signed(
            "GET",
            container,
            {"restype": "container", "comp": "list", "include": "uncommittedblobs"},
        ).raise_for_status()
        return listing.text.count("<Blob>")

    def _signed(self, method: str, container: str, params: dict[str, str]) -> httpx.Response:
        """A container request signed with the account's Shared Key (what the SDKs do)."""
        date = formatdate(usegmt=True)
        version = "2021-08-06"
        to_sign = "\n".join(
            [
                method,
                *[""] * 11,
                f"x-ms-date:{date}",
                f"x-ms-version:{version}",
                f"/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}",
                *(f"{k}:{v}" for k, v in sorted(params.items())),
            ]
        )
        signature = base64.b64encode(
            hmac.new(base64.b64decode(AZURITE_KEY), to_sign.encode(), hashlib.sha256).digest()
        ).decode()
        return httpx.request(
            method,
            f"{self.url}/{AZURITE_ACCOUNT}/{container}",
            params=params,
            headers={
                "x-ms-date": date,
                "x-ms-version": version,
                "Authorization": f"SharedKey {AZURITE_ACCOUNT}:{signature}",
            },
            timeout=10.0,
        )

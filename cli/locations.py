"""Where a job's files live, from the names a user types.

URIs (s3://, az://, gs://, file://) pass through untouched: the worker reads
them with its own credentials. A local path is a location under BATCH_DATA_DIR
(a folder every worker shares), unless BATCH_STORE names an object store: then
the starter copies the input to a folder of its own there, and results come
back from it, so starter and workers share no disk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from cli.environment import location, storage
from cli.exits import UsageError
from contracts.constants import ENV_BATCH_STORE
from storage import LocationError, ObjectStorage
from storage.objects import SCHEMES

URI_SCHEMES = ("file", *SCHEMES)


@dataclass(frozen=True)
class Transfer:
    """A file on this machine and its copy in the store."""

    local: Path
    remote: str


@dataclass(frozen=True)
class JobFiles:
    """The locations a workflow input names, and the copies the starter makes for them."""

    input_path: str
    output_path: str | None = None
    errors_path: str | None = None
    upload: Transfer | None = None
    bring_back: tuple[Transfer, ...] = ()


def is_uri(raw: str) -> bool:
    return "://" in raw


def checked_uri(raw: str, what: str) -> str:
    """A URI as given, once its scheme and shape are known good; never rewritten."""
    scheme = urlparse(raw).scheme
    if scheme not in URI_SCHEMES:
        raise UsageError(
            f"{what} {raw}: unknown scheme {scheme!r}; use a path, file://, s3://, az:// or gs://"
        )
    if scheme != "file":
        try:
            ObjectStorage().split(raw)
        except LocationError as exc:
            raise UsageError(f"{what} {exc}") from None
    return raw


def batch_store() -> str | None:
    """BATCH_STORE without its trailing slash (s3://bucket/prefix), or None when unset."""
    raw = os.environ.get(ENV_BATCH_STORE, "").strip()
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in SCHEMES or not parsed.netloc:
        raise UsageError(
            f"{ENV_BATCH_STORE}={raw}: expected s3://BUCKET/PREFIX, az://CONTAINER/PREFIX "
            "or gs://BUCKET/PREFIX"
        )
    if parsed.query or parsed.fragment or "@" in parsed.netloc:
        raise UsageError(
            f"{ENV_BATCH_STORE}={raw}: credentials and options come from the environment "
            "(AWS_*, AZURE_STORAGE_*, GOOGLE_*), not the location"
        )
    return raw.rstrip("/")


def existing_local(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise UsageError(f"{raw}: no such file")
    return path.resolve()


def _beside(path: Path, kind: str) -> Path:
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(f"{stem}.{kind}.jsonl")


def plan_job_files(file: str, output: str | None, errors: str | None, job_folder: str) -> JobFiles:
    """The job's locations; with BATCH_STORE, local files map into <store>/<job_folder>/."""
    store = batch_store()
    if store is None:
        return _in_data_dir(file, output, errors)
    folder = f"{store}/{job_folder}"
    upload: Transfer | None = None
    if is_uri(file):
        input_path = checked_uri(file, "input")
    else:
        local_input = existing_local(file)
        upload = Transfer(local_input, f"{folder}/input.jsonl")
        input_path = upload.remote
        # Results of a local input come back beside it unless named otherwise.
        output = output or str(_beside(local_input, "output"))
        errors = errors or str(_beside(local_input, "errors"))
    targets: dict[str, str | None] = {}
    bring_back: list[Transfer] = []
    for kind, raw, flag in (("output", output, "--output"), ("errors", errors, "--errors")):
        if raw is None:
            targets[kind] = None
        elif is_uri(raw):
            targets[kind] = checked_uri(raw, flag)
        else:
            transfer = Transfer(Path(raw).resolve(), f"{folder}/{kind}.jsonl")
            if upload is not None and transfer.local == upload.local:
                raise UsageError(f"{flag} {raw}: is the input file")
            bring_back.append(transfer)
            targets[kind] = transfer.remote
    if len({t.local for t in bring_back}) < len(bring_back):
        raise UsageError(f"--output and --errors both name {bring_back[0].local}")
    return JobFiles(input_path, targets["output"], targets["errors"], upload, tuple(bring_back))


def _in_data_dir(file: str, output: str | None, errors: str | None) -> JobFiles:
    """Without BATCH_STORE: local paths are locations in the folder the workers share."""
    data = storage()
    if is_uri(file):
        input_path = checked_uri(file, "input")
    else:
        existing_local(file)
        input_path = location(data, file)

    def place(raw: str | None, flag: str) -> str | None:
        if raw is None:
            return None
        return checked_uri(raw, flag) if is_uri(raw) else location(data, raw)

    return JobFiles(input_path, place(output, "--output"), place(errors, "--errors"))

"""Streaming multipart upload: request bytes go straight into the file's blob.

Starlette's form parser would spool the file to a temporary file and we would
copy it again; here python-multipart's low-level parser feeds each chunk of the
``file`` part to the blob's ``.part`` path as it arrives, so a 200 MB upload
costs one write and a few chunks of memory, and the size limit is enforced
while reading (413 as soon as it is exceeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from emulator.errors import ApiError
from emulator.models import new_file_id
from emulator.store import Store

MAX_FIELD_BYTES = 4096


@dataclass
class Upload:
    file_id: str
    filename: str
    purpose: str
    bytes: int


@dataclass
class _Parse:
    fh: BinaryIO | None = None
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str | None = None
    filename: str | None = None
    file_seen: bool = False
    file_bytes: int = 0
    fields: dict[str, bytearray] = field(default_factory=dict)


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"File is too large: the limit is {limit} bytes.",
        param="file",
        code="file_too_large",
    )


async def receive_upload(request: Request, store: Store, max_bytes: int) -> Upload:
    content_type, params = parse_options_header(request.headers.get("content-type"))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise ApiError(400, "Expected a multipart/form-data body with 'file' and 'purpose'.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise _too_large(max_bytes)

    file_id = new_file_id()
    part_path = store.part_path(file_id)
    st = _Parse()

    def on_part_begin() -> None:
        st.headers, st.name, st.filename = {}, None, None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        st.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        st.header_value += data[start:end]

    def on_header_end() -> None:
        st.headers[bytes(st.header_field).decode("latin-1").lower()] = bytes(st.header_value)
        st.header_field.clear()
        st.header_value.clear()

    def on_headers_finished() -> None:
        _, disp = parse_options_header(st.headers.get("content-disposition", b""))
        st.name = disp.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = disp.get(b"filename")
        st.filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
        if st.name == "file":
            if st.file_seen:
                raise ApiError(400, "Only one 'file' may be uploaded at a time.", param="file")
            st.file_seen = True
            st.fh = part_path.open("wb")
        else:
            st.fields[st.name] = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if st.name == "file" and st.fh is not None:
            st.file_bytes += end - start
            if st.file_bytes > max_bytes:
                raise _too_large(max_bytes)
            st.fh.write(data[start:end])
        elif st.name is not None:
            buf = st.fields[st.name]
            if len(buf) + end - start > MAX_FIELD_BYTES:
                raise ApiError(400, f"Form field '{st.name}' is too long.", param=st.name)
            buf += data[start:end]

    def on_part_end() -> None:
        if st.name == "file" and st.fh is not None:
            st.fh.close()
            st.fh = None
            st.filename = st.filename or "upload.jsonl"
            st.fields["__filename__"] = bytearray(st.filename.encode())

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if not st.file_seen or "__filename__" not in st.fields:
            raise ApiError(400, "Missing required parameter: 'file'.", param="file")
        purpose = st.fields.get("purpose", bytearray()).decode("utf-8", "replace").strip()
        if not purpose:
            raise ApiError(400, "Missing required parameter: 'purpose'.", param="purpose")
    except ApiError:
        _discard(st, part_path)
        raise
    except Exception as exc:
        _discard(st, part_path)
        raise ApiError(400, f"Could not parse the multipart body: {exc}") from exc
    return Upload(file_id, st.fields["__filename__"].decode(), purpose, st.file_bytes)


def _discard(st: _Parse, part_path: Path) -> None:
    if st.fh is not None:
        st.fh.close()
    part_path.unlink(missing_ok=True)

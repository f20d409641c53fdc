"""A TCP proxy in front of a storage server that slows uploads, so a test can act mid-upload.

Bytes from client to server trickle at a set rate; answers pass at full speed.
Once a request naming `watch` (an object key) has sent `after_bytes` through,
`mid_upload` is set: the upload is provably under way and provably unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib

from devstack.ports import LOCALHOST, free_port


class SlowUploadProxy:
    def __init__(
        self, upstream_port: int, watch: bytes, *, bytes_per_second: int, after_bytes: int
    ) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.watch = watch
        self.bytes_per_second = bytes_per_second
        self.after_bytes = after_bytes
        self.mid_upload = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    async def __aenter__(self) -> SlowUploadProxy:
        self._server = await asyncio.start_server(self._serve, LOCALHOST, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(LOCALHOST, self.upstream_port)
        up = asyncio.create_task(self._upload(client_r, server_w))
        down = asyncio.create_task(self._pipe(server_r, client_w))
        self._pipes |= {up, down}
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        for task in (up, down):
            task.cancel()
        for writer in (client_w, server_w):
            writer.close()

    async def _upload(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        chunk_bytes = max(1024, self.bytes_per_second // 20)
        tail = b""
        watched = 0
        while chunk := await reader.read(chunk_bytes):
            if self.watch in tail + chunk:
                watched = max(watched, 1)
            if watched:
                watched += len(chunk)
                if watched >= self.after_bytes:
                    self.mid_upload.set()
            tail = chunk[-len(self.watch) :]
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(len(chunk) / self.bytes_per_second)
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()

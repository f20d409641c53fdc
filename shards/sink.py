"""Output files written on one background thread, so reading and writing overlap.

The split and the merge read their input to count and cut lines; the bytes
they then write are mostly ranges of files already on disk, which the kernel
copies (``copy_file_range``) while the reading thread goes on. Writes run in
the order they were asked for, one thread for all files, and a failure is
raised in the caller at its next call or at ``drain``.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

BUFFER = 1024 * 1024
MAX_PENDING = 8
"""Writes queued at most (each may hold a 4 MiB block); the caller then waits for the oldest."""
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def copy_range(src_fd: int, dst_fd: int, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``src_fd`` from ``offset`` to ``dst_fd``, in the kernel if it can.

    Falls back to reads and writes where the file system has no kernel copy.
    """
    while length > 0:
        try:
            copied = os.copy_file_range(src_fd, dst_fd, length, offset)
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
            break
        if copied == 0:  # the end of the file, or a file system that copies nothing: see below
            break
        offset += copied
        length -= copied
    while length > 0:  # a file system with no kernel copy between these files
        data = os.pread(src_fd, min(length, 4 * BUFFER), offset)
        if not data:
            raise OSError(errno.EIO, f"the file ended {length} bytes early")
        _write_all(dst_fd, data)
        offset += len(data)
        length -= len(data)


class Sink:
    """One writer thread; every file written through it, in order."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shards-sink")
        self._pending: deque[Future[None]] = deque()
        self.failed = False
        """Set on the writer thread at the first failure: later writes are skipped."""

    def submit(self, work: Callable[..., None], *args: Any) -> None:
        while self._pending and (self._pending[0].done() or len(self._pending) >= MAX_PENDING):
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._run, work, args))

    def _run(self, work: Callable[..., None], args: tuple[Any, ...]) -> None:
        if self.failed and work is not _close:
            return  # nothing after a failed write may land, but every file is closed
        try:
            work(*args)
        except BaseException:
            self.failed = True
            raise

    def drain(self) -> None:
        """Wait for every write asked for; raise the first failure."""
        while self._pending:
            self._pending.popleft().result()

    def __enter__(self) -> Sink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is None:
                self.drain()
            else:  # already failing: let the queued writes end, keep the first error
                for future in self._pending:
                    future.exception()
                self._pending.clear()
        finally:
            self._pool.shutdown(wait=True)


class SinkFile:
    """A file written through a Sink: small writes buffered, ranges of other files copied."""

    def __init__(self, sink: Sink, path: Path) -> None:
        self.sink, self.path = sink, path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._buffer = bytearray()
        self.closed = False

    def write(self, data: bytes | memoryview) -> None:
        """``data`` must not change afterwards (bytes, or a view of bytes)."""
        if len(data) >= BUFFER:
            self._flush()
            self.sink.submit(_write_all, self.fd, data)
            return
        self._buffer += data
        if len(self._buffer) >= BUFFER:
            self._flush()

    def copy_from(self, src_fd: int, offset: int, length: int) -> None:
        if length:
            self._flush()
            self.sink.submit(copy_range, src_fd, self.fd, offset, length)

    def append_file(self, path: Path) -> None:
        """The whole of ``path``, as it is now, after what was written before."""
        source = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(source).st_size
            if size:
                self._flush()
                self.sink.submit(copy_range, source, self.fd, 0, size)
        finally:
            self.sink.submit(_close, self.sink, source, None)

    def _flush(self) -> None:
        if self._buffer:
            self.sink.submit(_write_all, self.fd, bytes(self._buffer))
            self._buffer.clear()

    def close(self, then: Callable[[], None] | None = None) -> None:
        """Close once every write has run; then ``then`` (e.g. the rename), on the same thread.

        ``then`` is skipped when a write before it failed.
        """
        if self.closed:
            return
        self.closed = True
        self._flush()
        self.sink.submit(_close, self.sink, self.fd, then)


def _close(sink: Sink, fd: int, then: Callable[[], None] | None) -> None:
    os.close(fd)
    if then is not None and not sink.failed:
        then()

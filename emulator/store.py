"""SQLite state (files, batches, line index, line results) and the file blobs.

Every write is one function run in a single writer thread, so each is one
transaction that no other coroutine can interleave with: a line's result and
the batch's counters are committed together, which is what makes a SIGKILL lose
only lines that had not finished. Reads run in a second thread on their own
connection (WAL lets them proceed while a write is in flight), so polling
clients keep getting answers while the scheduler writes.

The standard ``sqlite3`` module behind two single-thread executors is used
rather than aiosqlite because a transaction here is a whole Python function,
not a sequence of awaited statements that another coroutine could split.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from emulator.models import TERMINAL, BatchRecord, FileRecord

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status);
CREATE TABLE IF NOT EXISTS lines (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    batch_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    sort_key INTEGER NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (batch_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS successes (
    custom_id TEXT PRIMARY KEY,
    batches INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS count_success AFTER INSERT ON results WHEN NEW.ok = 1
BEGIN
    INSERT INTO successes (custom_id, batches)
    SELECT custom_id, 1 FROM lines WHERE batch_id = NEW.batch_id AND idx = NEW.idx
    ON CONFLICT (custom_id) DO UPDATE SET batches = batches + 1;
END;
"""


@dataclass(frozen=True)
class LineRef:
    """Where one request sits in its input file; the body is read when it runs."""

    idx: int
    offset: int
    length: int
    custom_id: str


@dataclass(frozen=True)
class LineResult:
    idx: int
    ok: bool
    sort_key: int
    line: str


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Store:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.blob_dir = data_dir / "files"
        self.db_path = data_dir / "emulator.sqlite3"
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="emulator-db-write")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="emulator-db-read")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.blob_dir.glob("*.part"):
            stale.unlink(missing_ok=True)
        loop = asyncio.get_running_loop()
        self._wconn = await loop.run_in_executor(self._writer, _connect, self.db_path)
        await loop.run_in_executor(self._writer, self._wconn.executescript, _SCHEMA)
        self._rconn = await loop.run_in_executor(self._reader, _connect, self.db_path)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._wconn is not None:
            await loop.run_in_executor(self._writer, self._wconn.close)
        if self._rconn is not None:
            await loop.run_in_executor(self._reader, self._rconn.close)
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one transaction in the writer thread."""
        conn = self._wconn
        assert conn is not None, "store not open"

        def run() -> T:
            with _transaction(conn):
                return fn(conn)

        return await asyncio.get_running_loop().run_in_executor(self._writer, run)

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._rconn
        assert conn is not None, "store not open"
        return await asyncio.get_running_loop().run_in_executor(self._reader, fn, conn)

    # meta

    async def get_meta(self, key: str) -> str | None:
        def q(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self.read(q)

    async def set_meta(self, key: str, value: str) -> None:
        await self.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value)
            )
        )

    # files

    def blob_path(self, file_id: str) -> Path:
        return self.blob_dir / file_id

    def part_path(self, file_id: str) -> Path:
        return self.blob_dir / f"{file_id}.part"

    async def add_file(self, record: FileRecord) -> None:
        """Publish a blob already written to its ``.part`` path."""
        part = self.part_path(record.id)
        if part.exists():
            os.replace(part, self.blob_path(record.id))
        await self.write(lambda c: _put_file(c, record))

    async def get_file(self, file_id: str) -> FileRecord | None:
        def q(c: sqlite3.Connection) -> FileRecord | None:
            row = c.execute("SELECT data FROM files WHERE id = ?", (file_id,)).fetchone()
            return None if row is None else FileRecord.model_validate_json(row[0])

        return await self.read(q)

    async def list_files(
        self, purpose: str | None, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> tuple[list[FileRecord], bool]:
        def q(c: sqlite3.Connection) -> tuple[list[FileRecord], bool]:
            where, params = ["1 = 1"], []
            if purpose:
                where.append("purpose = ?")
                params.append(purpose)
            if after:
                cmp = ">" if order == "asc" else "<"
                where.append(f"seq {cmp} COALESCE((SELECT seq FROM files WHERE id = ?), -1)")
                params.append(after)
            direction = "ASC" if order == "asc" else "DESC"
            sql = (
                f"SELECT data FROM files WHERE {' AND '.join(where)} "
                f"ORDER BY seq {direction} LIMIT ?"
            )
            rows = c.execute(sql, (*params, limit + 1)).fetchall()
            records = [FileRecord.model_validate_json(r[0]) for r in rows[:limit]]
            return records, len(rows) > limit

        return await self.read(q)

    async def delete_file(self, file_id: str) -> bool:
        deleted = await self.write(
            lambda c: c.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0
        )
        if deleted and not await self._input_of_active_batch(file_id):
            self.blob_path(file_id).unlink(missing_ok=True)
        return deleted

    async def _input_of_active_batch(self, file_id: str) -> bool:
        active = await self.active_batches()
        return any(b.input_file_id == file_id for b in active)

    # batches

    async def add_batch(self, record: BatchRecord) -> None:
        await self.write(
            lambda c: c.execute(
                "INSERT INTO batches (id, status, data) VALUES (?, ?, ?)",
                (record.id, record.status, record.model_dump_json()),
            )
        )

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        def q(c: sqlite3.Connection) -> BatchRecord | None:
            row = c.execute("SELECT data FROM batches WHERE id = ?", (batch_id,)).fetchone()
            return None if row is None else BatchRecord.model_validate_json(row[0])

        return await self.read(q)

    async def list_batches(self, after: str | None, limit: int) -> tuple[list[BatchRecord], bool]:
        def q(c: sqlite3.Connection) -> tuple[list[BatchRecord], bool]:
            if after:
                rows = c.execute(
                    "SELECT data FROM batches WHERE seq < "
                    "COALESCE((SELECT seq FROM batches WHERE id = ?), -1) "
                    "ORDER BY seq DESC LIMIT ?",
                    (after, limit + 1),
                ).fetchall()
            else:
                rows = c.execute(
                    "SELECT data FROM batches ORDER BY seq DESC LIMIT ?", (limit + 1,)
                ).fetchall()
            records = [BatchRecord.model_validate_json(r[0]) for r in rows[:limit]]
            return records, len(rows) > limit

        return await self.read(q)

    async def active_batches(self) -> list[BatchRecord]:
        marks = ",".join("?" * len(TERMINAL))

        def q(c: sqlite3.Connection) -> list[BatchRecord]:
            rows = c.execute(
                f"SELECT data FROM batches WHERE status NOT IN ({marks}) ORDER BY seq",
                tuple(TERMINAL),
            ).fetchall()
            return [BatchRecord.model_validate_json(r[0]) for r in rows]

        return await self.read(q)

    async def save_batches(self, records: Iterable[BatchRecord]) -> None:
        rows = [(r.status, r.model_dump_json(), r.id) for r in records]
        if rows:
            await self.write(
                lambda c: c.executemany(
                    "UPDATE batches SET status = ?, data = ? WHERE id = ?", rows
                )
            )

    async def start_lines(self, record: BatchRecord, lines: list[LineRef]) -> None:
        """Store the validated line index and move the batch on, together."""

        def tx(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM lines WHERE batch_id = ?", (record.id,))
            c.executemany(
                "INSERT INTO lines (batch_id, idx, offset, length, custom_id) "
                "VALUES (?, ?, ?, ?, ?)",
                [(record.id, ln.idx, ln.offset, ln.length, ln.custom_id) for ln in lines],
            )
            _put_batch(c, record)

        await self.write(tx)

    async def pending_lines(self, batch_id: str) -> list[LineRef]:
        """Lines with no stored result: the ones still to run after a restart."""

        def q(c: sqlite3.Connection) -> list[LineRef]:
            rows = c.execute(
                "SELECT l.idx, l.offset, l.length, l.custom_id FROM lines l "
                "LEFT JOIN results r ON r.batch_id = l.batch_id AND r.idx = l.idx "
                "WHERE l.batch_id = ? AND r.idx IS NULL ORDER BY l.idx",
                (batch_id,),
            ).fetchall()
            return [LineRef(*row) for row in rows]

        return await self.read(q)

    async def commit_results(
        self, results: dict[str, list[LineResult]], records: list[BatchRecord]
    ) -> None:
        """Results and the counters that count them, in one transaction.

        ``INSERT OR IGNORE`` keyed by (batch, line) makes a repeated write harmless.
        """

        def tx(c: sqlite3.Connection) -> None:
            for batch_id, batch_results in results.items():
                c.executemany(
                    "INSERT OR IGNORE INTO results (batch_id, idx, ok, sort_key, line) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(batch_id, r.idx, int(r.ok), r.sort_key, r.line) for r in batch_results],
                )
            for record in records:
                _put_batch(c, record)

        await self.write(tx)

    async def finish_batch(self, record: BatchRecord, files: list[FileRecord]) -> None:
        """Publish result files, store the terminal batch and drop its line tables."""
        for f in files:
            part = self.part_path(f.id)
            if part.exists():
                os.replace(part, self.blob_path(f.id))

        def tx(c: sqlite3.Connection) -> None:
            for f in files:
                _put_file(c, f)
            _put_batch(c, record)
            c.execute("DELETE FROM results WHERE batch_id = ?", (record.id,))
            c.execute("DELETE FROM lines WHERE batch_id = ?", (record.id,))

        await self.write(tx)

    def iter_result_lines(
        self, batch_id: str, ok: bool, unfinished: Callable[[str], str] | None = None
    ) -> Iterator[str]:
        """Stream result lines in sort-key order; blocking, for a worker thread.

        With ``unfinished``, also yield one line per input line without a result
        (the ``batch_expired`` lines of an expired batch).
        """
        conn = _connect(self.db_path)
        try:
            cur = conn.execute(
                "SELECT line FROM results WHERE batch_id = ? AND ok = ? ORDER BY sort_key",
                (batch_id, int(ok)),
            )
            while rows := cur.fetchmany(1000):
                for (line,) in rows:
                    yield line
            if unfinished is not None:
                cur = conn.execute(
                    "SELECT l.custom_id FROM lines l LEFT JOIN results r "
                    "ON r.batch_id = l.batch_id AND r.idx = l.idx "
                    "WHERE l.batch_id = ? AND r.idx IS NULL ORDER BY l.custom_id",
                    (batch_id,),
                )
                while rows := cur.fetchmany(1000):
                    for (custom_id,) in rows:
                        yield unfinished(custom_id)
        finally:
            conn.close()

    async def successes(self, prefix: str, limit: int) -> dict[str, Any]:
        """How many batches ran each custom_id (starting with prefix) to success, since the
        data directory was new.

        Counted by a trigger on the results table, so a success is counted once,
        when its result is committed (a result written again is ignored).
        """
        where = "substr(custom_id, 1, ?) = ?"
        chosen = (len(prefix), prefix)

        def q(c: sqlite3.Connection) -> dict[str, Any]:
            ids, runs = c.execute(
                f"SELECT COUNT(*), COALESCE(SUM(batches), 0) FROM successes WHERE {where}", chosen
            ).fetchone()
            repeated = c.execute(
                f"SELECT custom_id, batches FROM successes WHERE {where} AND batches > 1 "
                "ORDER BY custom_id LIMIT ?",
                (*chosen, limit),
            ).fetchall()
            rows = c.execute(
                f"SELECT custom_id, batches FROM successes WHERE {where} "
                "ORDER BY custom_id LIMIT ?",
                (*chosen, limit),
            ).fetchall()
            return {
                "custom_ids": int(ids),
                "successes": int(runs),
                "repeated": {str(i): int(n) for i, n in repeated},
                "by_custom_id": {str(i): int(n) for i, n in rows},
            }

        return await self.read(q)

    async def count_by_status(self) -> dict[str, int]:
        def q(c: sqlite3.Connection) -> dict[str, int]:
            rows = c.execute("SELECT status, COUNT(*) FROM batches GROUP BY status").fetchall()
            return {str(s): int(n) for s, n in rows}

        return await self.read(q)


def _put_file(c: sqlite3.Connection, record: FileRecord) -> None:
    c.execute(
        "INSERT INTO files (id, purpose, data) VALUES (?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET purpose = excluded.purpose, data = excluded.data",
        (record.id, record.purpose, record.model_dump_json()),
    )


def _put_batch(c: sqlite3.Connection, record: BatchRecord) -> None:
    c.execute(
        "UPDATE batches SET status = ?, data = ? WHERE id = ?",
        (record.status, record.model_dump_json(), record.id),
    )


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

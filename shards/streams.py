"""Byte-level work on whole JSONL files: copy and count lines, find a request's line.

Everything here runs at the speed of C searches over large blocks: no Python
per line, so a million lines cost about what copying their bytes costs.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from pathlib import Path

from shards.lines import custom_id_key
from shards.sink import SinkFile

BLOCK = 4 * 1024 * 1024


def after_newlines(block: bytes | bytearray, pos: int, cut: int, lines: int, wanted: int) -> int:
    """The offset just after the ``wanted``-th newline from ``pos``.

    ``block[pos:cut]`` is whole lines (``cut`` just after a newline) holding
    ``lines`` newlines, at least ``wanted``. Interpolation on newline counts
    (lines are similar in size, so a few C-speed counts land near the answer),
    each guess kept strictly inside the range so that it always narrows; then
    steps over the last few lines.
    """
    low, low_lines, high, high_lines = pos, 0, cut, lines
    while high_lines - low_lines > 16:
        guess = low + (high - low) * (wanted - low_lines) // (high_lines - low_lines)
        newline = block.find(b"\n", max(guess, low), high - 1)
        if newline < 0:
            newline = block.rfind(b"\n", low, high - 1)
        guess = newline + 1
        found = low_lines + block.count(b"\n", low, guess)
        if found == wanted:
            return guess
        if found < wanted:
            low, low_lines = guess, found
        else:
            high, high_lines = guess, found
    at = low
    for _ in range(wanted - low_lines):
        at = block.index(b"\n", at) + 1
    return at


def _count(path: Path) -> tuple[int, bool]:
    """Newlines in the file, and whether it ends with one (an empty file does)."""
    lines, whole = 0, True
    buffer = bytearray(BLOCK)
    with path.open("rb", buffering=0) as stream:
        while size := stream.readinto(buffer):
            lines += buffer.count(b"\n", 0, size)
            whole = buffer[size - 1] == ord("\n")
    return lines, whole


def count_lines(path: Path) -> int:
    """Lines of the file, a last one without its newline counted."""
    lines, whole = _count(path)
    return lines + (not whole)


def copy_counting(path: Path, out: SinkFile) -> int:
    """Append the file to ``out`` (adding a final newline if missing); its line count.

    The kernel copies on the sink's thread while this one reads to count.
    """
    out.append_file(path)
    lines, whole = _count(path)
    if not whole:
        out.write(b"\n")
        lines += 1
    return lines


def _cut_after(block: bytes, at: int, end: int, wanted: int, line_size: int) -> tuple[int, int]:
    """The offset after the ``wanted``-th newline from ``at``, or ``end`` if fewer; and the count.

    ``block[at:end]`` is whole lines. A guess from the mean line length, one
    count up to it, then a step per line it missed by: lines are similar in
    size, so that is a few steps, and the bytes are counted about once.
    """
    cut = min(at + wanted * line_size, end)
    if cut < end:
        cut = block.index(b"\n", cut) + 1
    lines = block.count(b"\n", at, cut)
    while lines > wanted:
        cut = block.rfind(b"\n", at, cut - 1) + 1
        lines -= 1
    while lines < wanted and cut < end:
        cut = block.index(b"\n", cut) + 1
        lines += 1
    return cut, lines


class LineCopier:
    """Copies a file's lines to ``out`` a given number at a time, in big blocks.

    Each call costs about what it copies: the cut is guessed from the mean
    line length so far, not searched for in the rest of the block.
    """

    def __init__(self, path: Path, out: SinkFile) -> None:
        self.path, self.out = path, out
        self.stream = path.open("rb", buffering=0)
        self.block = b""
        self.at = 0
        self.copied = 0
        self.line_size = 256

    def copy_lines(self, wanted: int) -> None:
        """Copy the next ``wanted`` lines; fewer only if the file ends first."""
        while wanted > 0:
            if self.at >= len(self.block):
                self.block, self.at = self.stream.read(BLOCK), 0
                if not self.block:
                    return
            end = self.block.rfind(b"\n", self.at) + 1  # after the block's last whole line
            if end <= self.at:  # the start of a line the next block ends
                self._copy_to(len(self.block), 0)
                continue
            cut, lines = _cut_after(self.block, self.at, end, wanted, self.line_size)
            if lines == wanted:
                self._copy_to(cut, lines)
                return
            self._copy_to(len(self.block), lines)  # with the start of a line the next block ends
            wanted -= lines

    def _copy_to(self, cut: int, lines: int) -> None:
        self.out.write(memoryview(self.block)[self.at : cut])
        if lines:
            self.line_size = max(1, (cut - self.at) // lines)
        self.at = cut
        self.copied += lines

    def copy_rest(self) -> None:
        self.copy_lines(1 << 62)
        self.stream.close()


def _newlines(view: mmap.mmap, start: int, end: int) -> int:
    return sum(view[at : min(at + BLOCK, end)].count(b"\n") for at in range(start, end, BLOCK))


def find_lines(input_path: Path, keys: Sequence[bytes]) -> list[tuple[int, bytes]] | None:
    """The 0-based line and the bytes of each custom_id's line, the keys in the file's order.

    Each key is found as a quoted string searching forward from the last one's
    line, then confirmed as that line's custom_id. None when one is not found
    that way (keys out of order, or written with other escapes in the input):
    the caller then reads the file line by line.
    """
    found: list[tuple[int, bytes]] = []
    if not keys:
        return found
    with input_path.open("rb") as stream:
        if os.fstat(stream.fileno()).st_size == 0:
            return None
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as view:
            pos, line, size = 0, 0, len(view)
            for key in keys:
                needle = b'"' + key + b'"'
                while True:
                    at = view.find(needle, pos)
                    if at < 0:
                        return None
                    start = view.rfind(b"\n", pos, at) + 1 or pos
                    end = view.find(b"\n", at) + 1 or size
                    line += _newlines(view, pos, start)
                    pos = end
                    raw = view[start:end]
                    if custom_id_key(raw) == key:
                        found.append((line, raw))
                        line += 1
                        break
                    line += 1
    return found


def line_positions(input_path: Path, keys: Sequence[bytes]) -> list[int] | None:
    """The 0-based line of each custom_id in a file of requests, the keys in its order."""
    found = find_lines(input_path, keys)
    return None if found is None else [line for line, _ in found]

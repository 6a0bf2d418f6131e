"""Small files parsed several to a task.

A parse has a fixed cost that does not shrink with its lines (the format's columns, set up and built
once a call: ~5 ms for ALB's ~40), so a prefix of thousands of small objects (an AWS load balancer
writes one per node every 5 minutes, often of 10-500 lines) would spend most of its time on it with
each file a task of its own (BENCHMARKS.md, "An AWS log prefix: many small objects").

* The read stage's :class:`Packer` puts the whole reads of small files (``read.pack_bytes``) that parse
  alike (the plan's pack key: their format, and whether a file's lines depend on a header before them)
  together in one chunk of at most ``read.chunk_bytes`` and its lines' limit, each file a
  :class:`~pipeline.stages.read.Segment` of it.
* In the worker, :class:`Unpacker` gives the rows, rejects and counts of the one parse back to their
  files: rejects name (file, line) as the file's own chunk would, the origin columns
  (``run.file_column``, ``run.source_column``) name each row's own file, and every file is counted
  apart (:class:`FileCounts`), so the record and the incremental state stay exact per file.

Memory: the open packs hold at most ``read.chunk_bytes`` in all (the largest is sent on first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import dictionary_array, int64_array
from pipeline.formats.base import RejectRows
from pipeline.stages.read import Chunk, Segment
from pipeline.transforms import Applied

# how the plan says a chunk may be packed: (key, fresh), chunks of one key parse alike; a chunk that is
# not fresh reads a header's state from the lines before it, so it only starts a pack; None: not packed
PackKey = Callable[[Chunk], tuple[Hashable, bool] | None]


@dataclass
class _Open:
    chunks: list[Chunk]
    size: int = 0
    lines: int = 0


class Packer:
    """Sends each chunk on with ``put``, the whole reads of small files packed (thread-safe: every
    reader thread adds its chunks; :meth:`flush` sends the packs still open once they are done)."""

    def __init__(
        self, put: Callable[[Chunk], None], chunk_bytes: int, max_lines: int, pack_bytes: int, key: PackKey
    ) -> None:
        self._put, self._key = put, key
        self.chunk_bytes, self.max_lines, self.pack_bytes = chunk_bytes, max_lines, pack_bytes
        self._open: dict[Hashable, _Open] = {}
        self._held = 0  # bytes in the open packs
        self._lock = threading.Lock()

    def add(self, chunk: Chunk) -> None:
        """Send ``chunk`` on, or keep it in its pack (which may send a full one on)."""
        how = self._key(chunk) if chunk.whole and len(chunk.data) <= self.pack_bytes else None
        if how is None:
            self._put(chunk)
            return
        key, fresh = how
        ready = []
        with self._lock:
            pack = self._open.get(key)
            if pack is not None and (
                not fresh
                or pack.size + len(chunk.data) > self.chunk_bytes
                or pack.lines + chunk.n_lines > self.max_lines
            ):
                ready.append(self._close(key))
            pack = self._open.setdefault(key, _Open([]))
            pack.chunks.append(chunk)
            pack.size += len(chunk.data)
            pack.lines += chunk.n_lines
            self._held += len(chunk.data)
            while self._held > self.chunk_bytes:  # packs of many keys: the largest goes first
                ready.append(self._close(max(self._open, key=lambda k: self._open[k].size)))
        for packed in ready:  # outside the lock: a full channel blocks only this reader
            self._put(packed)

    def flush(self) -> None:
        """Send every pack still open (the readers are done)."""
        with self._lock:
            ready = [self._close(key) for key in list(self._open)]
        for packed in ready:
            self._put(packed)

    def _close(self, key: Hashable) -> Chunk:
        pack = self._open.pop(key)
        self._held -= pack.size
        return pack_chunks(pack.chunks)


def pack_chunks(chunks: list[Chunk]) -> Chunk:
    """One chunk of the whole reads ``chunks`` (one alone: itself)."""
    if len(chunks) == 1:
        return chunks[0]
    segments = tuple(
        Segment(c.file_id, c.path, c.seq, c.first_line, c.n_lines, len(c.data), c.rejects) for c in chunks
    )
    first = chunks[0]
    data = b"".join(c.data for c in chunks)
    n_lines = sum(c.n_lines for c in chunks)
    return Chunk(first.file_id, first.path, first.seq, first.first_line, data, n_lines, segments=segments)


@dataclass(frozen=True)
class FileCounts:
    """One file's share of a parse result: what the record counts for it, and how many rows of the
    result's rejects batch are its (the files' rejects follow each other in segment order)."""

    file_id: int
    seq: int
    first_line: int
    lines: int
    rows: int
    reject_counts: dict[str, int]
    filtered: int
    skipped: int
    rejects: int
    absent: tuple[str, ...] = ()  # JSON lines: the mapped keys no line of the file's share has a value for


class Unpacker:
    """A packed chunk's parse, given back to its files. The chunk's data is parsed in one call with its
    lines numbered from 1; a line is then known by its place (counted from 0) in the data, and
    :meth:`segment_of` tells whose it is."""

    def __init__(self, segments: tuple[Segment, ...]) -> None:
        self.segments = segments
        self._data_lines = np.array([s.data_lines for s in segments], dtype=np.int64)
        self.starts = np.concatenate(
            [[0], np.cumsum(self._data_lines)]
        )  # each segment's first line in the data
        self.first = np.array([s.first_line for s in segments], dtype=np.int64)
        self._parsed = np.zeros(len(segments), dtype=np.int64)
        self._parse_rejects = np.zeros(len(segments), dtype=np.int64)
        self._absent: list[tuple[str, ...]] = [()] * len(segments)

    def segment_of(self, lines: Any) -> Any:
        """The segment of each line (numpy int64: places in the data, from 0)."""
        return np.searchsorted(self.starts, lines, side="right") - 1

    def parsed(self, rows: Any, rejects: RejectRows, valued: Mapping[str, Any]) -> None:
        """Note what the format's parse made of each segment (``rows``: each row's line; ``valued``: the
        lines that have a value for each mapped JSON key), before the time window and the transforms
        drop rows or reject more."""
        self._parsed = self._count(_rows(rows))
        self._parse_rejects = self._count(_reject_lines(rejects) - 1)
        has = {key: self._count(lines) > 0 for key, lines in valued.items()}
        self._absent = [  # a file without lines is not parsed alone: it lacks nothing
            tuple(key for key, in_segment in has.items() if not in_segment[k]) if n else ()
            for k, n in enumerate(self._data_lines)
        ]

    def origin_columns(self, origins: tuple[tuple[tuple[str, str], ...], ...], rows: Any) -> list[pa.Array]:
        """The origin columns' values of rows whose lines are ``rows``, each row its own segment's
        (``origins``: each segment's (column, value) pairs, the same columns in each)."""
        seg = self.segment_of(_rows(rows))
        columns = []
        for j in range(len(origins[0])):
            values = [o[j][1] for o in origins]
            index = {v: i for i, v in enumerate(dict.fromkeys(values))}
            where = np.array([index[v] for v in values], dtype=np.int32)
            columns.append(dictionary_array(list(index), where[seg]))
        return columns

    def finish(
        self,
        joint: pa.RecordBatch,
        readers: dict[int, pa.RecordBatch],
        rows: Any,
        filtered: int,
        skipped: int,
    ) -> tuple[pa.RecordBatch, tuple[FileCounts, ...]]:
        """The rejects batch in file lines, grouped by segment (``joint``: the parse's and the transforms'
        rejects, numbered in the data; ``readers``: the reader rejects of the segments that have any, in
        their files' lines),
        and each file's counts (``rows``: the rows kept, by line; ``filtered``, ``skipped``: the
        chunk's totals, which the files' must add up to)."""
        places = _int64s(joint.column("line")) - 1
        seg = self.segment_of(places)
        lines = self.first[seg] + places - self.starts[seg]
        batch = joint.set_column(0, "line", int64_array(lines))
        parts = [batch, *readers.values()]
        keys = np.concatenate([seg, *[np.full(r.num_rows, k, dtype=np.int64) for k, r in readers.items()]])
        merged = pa.concat_batches(parts) if len(parts) > 1 else batch
        order = np.lexsort((_int64s(merged.column("line")), keys))
        merged = merged.take(int64_array(order))
        keys = keys[order]
        kept = self._count(_rows(rows))
        joint_rejects = self._count(places)
        counts = _reasons(keys, merged.column("reason").to_pylist(), len(self.segments))
        n_rejects = np.bincount(keys, minlength=len(self.segments)).tolist()
        skips = (self._data_lines - self._parsed - self._parse_rejects).tolist()
        drops = (self._parsed - kept - (joint_rejects - self._parse_rejects)).tolist()
        files = [
            FileCounts(
                s.file_id, s.seq, s.first_line, s.n_lines, n, counts[k], drop, skip, r, self._absent[k]
            )
            for k, (s, n, drop, skip, r) in enumerate(
                zip(self.segments, kept.tolist(), drops, skips, n_rejects, strict=True)
            )
        ]
        if sum(f.skipped for f in files) != skipped or sum(f.filtered for f in files) != filtered:
            raise RuntimeError(
                f"a packed chunk's files do not add up: skipped {[f.skipped for f in files]} (of {skipped}), "
                f"filtered {[f.filtered for f in files]} (of {filtered})"
            )
        return merged, tuple(files)

    def per_file(self, run: Callable[[pa.Table, Any], Applied], table: pa.Table, lines: Any) -> Applied:
        """``run`` (the transforms) over each file's rows apart, with their lines numbered in their file
        (``lines``: numbered in the data, from 1): a transform sees ``_line`` as the rows' own file
        lines, as when each file is a task. The rows' and rejects' lines come back numbered in the data."""
        places = np.asarray(lines, dtype=np.int64) - 1
        if not len(places):
            return run(table, places + 1)
        seg = self.segment_of(places)
        order = np.argsort(seg, kind="stable")  # each file's rows together, in their order
        found, begins = np.unique(seg[order], return_index=True)
        parts = []
        for k, lo, hi in zip(
            found.tolist(), begins.tolist(), [*begins[1:].tolist(), len(order)], strict=True
        ):
            idx = order[lo:hi]
            applied = run(table.take(int64_array(idx)), self.first[k] + places[idx] - self.starts[k])
            parts.append((applied, int(self.starts[k] - self.first[k] + 1)))
        seconds: dict[str, float] = {}
        for applied, _ in parts:
            for name, s in applied.seconds.items():
                seconds[name] = seconds.get(name, 0.0) + s
        return Applied(
            pa.concat_tables([a.table for a, _ in parts]),
            np.concatenate([a.lines + back for a, back in parts]),
            [(line + back, reason) for a, back in parts for line, reason in a.rejects],
            sum(a.filtered for a, _ in parts),
            seconds,
        )

    def _count(self, lines: Any) -> Any:
        return np.bincount(self.segment_of(lines), minlength=len(self.segments)).astype(np.int64)


def _int64s(column: pa.Array) -> Any:
    """An int64 column without nulls as numpy, from its buffer (``to_numpy`` would import pandas)."""
    if not len(column):
        return np.zeros(0, dtype=np.int64)
    return np.frombuffer(column.buffers()[1], dtype=np.int64, count=len(column) + column.offset)[
        column.offset :
    ]


def _rows(rows: Any) -> Any:
    return np.zeros(0, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)


def _reject_lines(rejects: RejectRows) -> Any:
    """Every reject's line number (the blank ones' too)."""
    return np.concatenate([np.asarray(rejects.lines, dtype=np.int64), *[lines for _, lines in rejects.blank]])


def _reasons(keys: Any, reasons: list[str], n: int) -> list[dict[str, int]]:
    """Rejects per reason of each segment (``keys``: each reject's segment)."""
    out: list[dict[str, int]] = [{} for _ in range(n)]
    for k, reason in zip(keys.tolist(), reasons, strict=True):
        out[k][reason] = out[k].get(reason, 0) + 1
    return out

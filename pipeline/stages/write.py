"""Write stage (threads): hive-partitioned zstd Parquet in a staging directory, committed atomically.

Parquet encoding and compression run in Arrow's C++ without the GIL, so writers are threads. Each
writer thread owns its files (``date=YYYY-MM-DD/part-<run>-w<k>-<seq>.parquet``), so writers never share
a file. Rows are buffered per date until a row group is full, so files get row groups of
``row_group_rows`` rows however small the chunks are; the buffer is capped (at most two row groups per
writer: the largest buffer is flushed early) and at most ``max_open_files`` files are open per writer
(the least recently used is closed first, with the rows still buffered for its date as its last row
group), so memory does not grow with the number of dates in the input.

Nothing is written into the output directory itself: the dataset goes to a staging directory and the
rejects to the run's record, which :class:`pipeline.output.record.Committer` publishes together on success.

Every I/O error (a full disk above all: Arrow's own message names no file) is raised as a
:class:`WriteError` naming the file or directory and what was being done with it.

A write thread (:func:`write_results`) takes parse results from the result channel into its writer.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.arrays import repeat_string
from pipeline.errors import StageError
from pipeline.formats import conform
from pipeline.runtime import release_free_heap
from pipeline.stages.parse import REJECT_SCHEMA, ParseResult, from_ipc

if TYPE_CHECKING:  # the record imports this module
    from pipeline.config import WriteSection
    from pipeline.diagnostics.stats import StageStats
    from pipeline.report.data import RejectExamples
    from pipeline.stages.flow import Channel, Shared

log = logging.getLogger(__name__)

REJECT_BUFFER_BYTES = 4 << 20  # rejects kept in memory before they are written as one row group


class WriteError(OSError):
    """An I/O error of the write stage: what was being done to which path, and the cause (chained,
    its errno kept)."""

    def __init__(self, action: str, path: Path | str, cause: OSError):
        super().__init__(cause.errno, cause.strerror)
        self.action = action
        self.path = str(path)
        self.cause = cause

    def __str__(self) -> str:
        return f"cannot {self.action} {self.path}: {self.cause}"


@contextmanager
def _io(action: str, path: Path | str) -> Iterator[None]:
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(action, path, exc) from exc


@dataclass
class WrittenFile:
    """One Parquet file written by this run."""

    path: str  # relative to the output directory
    rows: int
    date: str | None = None


@dataclass
class _Open:
    writer: pq.ParquetWriter
    file: WrittenFile


@dataclass
class PartitionWriter:
    """The files of one writer thread. Not thread-safe: one instance per thread."""

    root: Path  # the dataset's staging directory
    name: str  # unique per run and writer, e.g. "20261125T0800-ab12cd-w0"
    schema: pa.Schema
    _: KW_ONLY
    # the [write] settings of the same names (no defaults here: pipeline.config declares them)
    row_group_rows: int
    max_rows_per_file: int
    max_open_files: int
    compression: str
    compression_level: int | None
    rejects_dir: Path | None = None  # where the rejects file goes; None: ROOT/rejects
    parquet_options: dict[str, Any] = field(default_factory=dict)  # the format's per-column settings
    files: list[WrittenFile] = field(default_factory=list)
    reject_files: list[str] = field(default_factory=list)  # paths of the rejects files written
    rows: int = 0
    _open: OrderedDict[str, _Open] = field(default_factory=OrderedDict)
    _buffers: dict[str, list[pa.RecordBatch]] = field(default_factory=dict)
    _buffered: dict[str, int] = field(default_factory=dict)
    _seq: int = 0
    _rejects: pq.ParquetWriter | None = None
    _reject_tables: list[pa.Table] = field(default_factory=list)
    _reject_bytes: int = 0

    def add(self, date: str, batch: pa.RecordBatch) -> None:
        """Queue ``batch`` (rows of one date) for writing.

        It may stay buffered until its date's row group fills, so it should own its buffers: a slice
        of a larger batch would keep all of that alive (the parse stage sends one batch per date).
        """
        if batch.num_rows == 0:
            return
        if not batch.schema.equals(self.schema):  # an incremental run's dataset holds more columns
            batch = conform(batch, self.schema)
        self._buffers.setdefault(date, []).append(batch)
        self._buffered[date] = self._buffered.get(date, 0) + batch.num_rows
        if self._buffered[date] >= self.row_group_rows:
            self._flush(date, whole_groups=True)
        elif sum(self._buffered.values()) > 2 * self.row_group_rows:
            self._flush(max(self._buffered, key=self._buffered.__getitem__))

    def add_rejects(self, source: str, batch: pa.RecordBatch) -> None:
        """Append rejected lines of ``source`` to this writer's rejects file.

        Buffered up to :data:`REJECT_BUFFER_BYTES`: a chunk has a handful of rejects, and a row group
        per chunk would make the file slow to write and to read.
        """
        if batch.num_rows == 0:
            return
        files = repeat_string(source, batch.num_rows)
        self._reject_tables.append(pa.Table.from_batches([batch]).add_column(0, "file", files))
        self._reject_bytes += self._reject_tables[-1].nbytes
        if self._reject_bytes >= REJECT_BUFFER_BYTES:
            self._flush_rejects()

    def _flush_rejects(self) -> None:
        if not self._reject_tables:
            return
        if self._rejects is None:
            path = (self.rejects_dir or self.root / "rejects") / f"part-{self.name}.parquet"
            with _io("create the directory", path.parent):
                path.parent.mkdir(parents=True, exist_ok=True)
            schema = pa.schema([("file", pa.string()), *REJECT_SCHEMA])
            with _io("create", path):
                self._rejects = pq.ParquetWriter(path, schema, compression="zstd")
            self.reject_files.append(path.name)
        with _io("write", self._rejects.where):
            self._rejects.write_table(pa.concat_tables(self._reject_tables))
        self._reject_tables.clear()
        self._reject_bytes = 0

    def _flush(self, date: str, whole_groups: bool = False) -> None:
        """Write the rows buffered for ``date``; with ``whole_groups``, only full row groups."""
        table = pa.Table.from_batches(self._buffers.pop(date, []), self.schema)
        self._buffered.pop(date, None)
        rows = table.num_rows
        if whole_groups:
            rows -= rows % self.row_group_rows
            rest = table.slice(rows)
            if rest.num_rows:
                self._buffers[date] = rest.to_batches()
                self._buffered[date] = rest.num_rows
            table = table.slice(0, rows)
        if not rows:
            return
        entry = self._file(date)
        with _io("write", entry.writer.where):
            entry.writer.write_table(table, row_group_size=self.row_group_rows)
        entry.file.rows += rows
        self.rows += rows
        if entry.file.rows >= self.max_rows_per_file:
            self._close(date)

    def _file(self, date: str) -> _Open:
        entry = self._open.get(date)
        if entry is not None:
            self._open.move_to_end(date)
            return entry
        while len(self._open) >= self.max_open_files:
            self._evict(next(iter(self._open)))
        rel = Path(f"date={date}") / f"part-{self.name}-{self._seq:05d}.parquet"
        self._seq += 1
        with _io("create the directory", (self.root / rel).parent):
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        with _io("create", self.root / rel):
            writer = pq.ParquetWriter(
                self.root / rel,
                self.schema,
                compression=self.compression,
                compression_level=self.compression_level,
                **self.parquet_options,
            )
        entry = _Open(writer, WrittenFile(str(rel), 0, date))
        self.files.append(entry.file)
        self._open[date] = entry
        return entry

    def _evict(self, date: str) -> None:
        """Close the file of ``date`` to make room, with the rows still buffered for it as its last
        row group: left in the buffer, they would later open a second, tiny file for the date."""
        self._flush(date)  # into the date's open file: _file() finds it, nothing else is opened
        if date in self._open:  # unless _flush closed it at max_rows_per_file
            self._close(date)

    def _close(self, date: str) -> None:
        entry = self._open.pop(date)
        with _io("close", entry.writer.where):  # the footer, and what the file system still buffers
            entry.writer.close()

    def close(self) -> None:
        """Flush every buffer and close every file."""
        for date in list(self._buffers):
            self._flush(date)
        for date in list(self._open):
            self._close(date)
        self._flush_rejects()
        if self._rejects is not None:
            rejects, self._rejects = self._rejects, None
            with _io("close", rejects.where):
                rejects.close()

    def abort(self) -> None:
        """Close files without flushing (the staging directory is about to be removed). An error
        closing one (the full disk that failed the run) is logged, not raised: it would hide the
        run's own error."""
        self._buffers.clear()
        self._buffered.clear()
        self._reject_tables.clear()
        writers = [entry.writer for entry in self._open.values()]
        self._open.clear()
        if self._rejects is not None:
            writers.append(self._rejects)
            self._rejects = None
        for writer in writers:
            try:
                writer.close()
            except OSError as exc:
                log.debug("write: closing %s of a failed run: %s", writer.where, exc)


def partition_writers(
    settings: WriteSection,
    n: int,
    data_dir: Path,
    run_id: str,
    schema: pa.Schema,
    *,
    rejects_dir: Path,
    parquet_options: dict[str, Any],
) -> list[PartitionWriter]:
    """One writer per write thread (``n``), each with files of its own in ``data_dir``."""
    return [
        PartitionWriter(
            data_dir,
            f"{run_id}-w{k}",
            schema,
            rejects_dir=rejects_dir,
            parquet_options=parquet_options,
            row_group_rows=settings.row_group_rows,
            max_rows_per_file=settings.max_rows_per_file,
            max_open_files=settings.max_open_files,
            compression=settings.compression,
            compression_level=settings.compression_level,
        )
        for k in range(n)
    ]


def write_results(
    writer: PartitionWriter,
    results: Channel[ParseResult],
    shared: Shared,
    stats: StageStats,
    paths: Callable[[int], str],
    examples: RejectExamples,
) -> None:
    """A write thread: every result it takes from ``results`` into ``writer``'s files, counted in the
    run's record, until the end of the stream; then the writer's files are closed."""
    while True:
        with stats.timed("wait_in_s"):
            result = results.get()
        if result is None:
            break
        stats.start()
        files = result.files()
        path = paths(files[0].file_id)
        try:
            with stats.busy():
                for part in result.parts:
                    writer.add(part.date, from_ipc(part.ipc))
                rejects = from_ipc(result.rejects)
                at = 0  # each file's rejects follow the one's before
                for f in files:
                    path = paths(f.file_id)
                    mine = rejects.slice(at, f.rejects)
                    writer.add_rejects(path, mine)
                    examples.add(path, mine)
                    at += f.rejects
        except OSError as exc:
            raise StageError("write", f"{type(exc).__name__}: {exc}", file=path) from exc
        for f in files:
            shared.record.add_parsed(f.file_id, f.rows, f.reject_counts, f.filtered, f.skipped)
        stats.add(items_in=1, lines=result.rows, bytes=result.in_bytes)
        shared.progress.add(rows=result.rows)
        release_free_heap()  # at most every RELEASE_INTERVAL_S: see pipeline/runtime.py
    with stats.busy():
        try:
            writer.close()
        except OSError as exc:
            raise StageError("write", f"{type(exc).__name__}: {exc}") from exc
    stats.add(items_out=len(writer.files))
    stats.finish()

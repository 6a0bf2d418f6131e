"""Parse stage: turn a chunk into an Arrow batch, rejects and the worker's own timing.

:func:`parse_chunk` is the unit of work every executor runs (``pipeline.executors``: a local process
pool, threads, inline, a Dask cluster): a top-level, picklable function that takes a :class:`ParseTask`
(the chunk's bytes and the few settings the format needs) and returns a :class:`ParseResult` whose batch
and rejects are Arrow IPC *bytes*: whatever boundary it crosses (a pipe, shared memory, the network)
ships a few large buffers, never a Python object per line. This module knows nothing of *where* it
runs; the transports (shared memory for the local pool) call :func:`parse_data` with the bytes and an
output buffer of their own.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
import pyarrow as pa

from pipeline import defaults
from pipeline.arrays import binary_array, constant_dictionary, int64_array, repeat_string
from pipeline.formats import FormatKey, conform, get_format, union_schema
from pipeline.formats.base import FormatResult, RejectRows, Rows, empty_batch, finish
from pipeline.formats.vector import DAY_US, keep_between, line_bounds, timestamps
from pipeline.stages.pack import FileCounts, Unpacker
from pipeline.stages.read import Chunk
from pipeline.transforms import Applied, TransformError, TransformSpec, apply, output_schema

REJECT_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.binary()),
        ("raw_bytes", pa.int64()),
    ]
)


def _worker_name() -> str:
    """A process worker by its pid; a thread (parse.executor = "thread", or "inline" in the dispatch
    thread) by its name. (A Dask worker's results are renamed after its address by the executor.)"""
    thread = threading.current_thread()
    return f"pid {os.getpid()}" if thread is threading.main_thread() else thread.name


@dataclass
class ParseTask:
    """What crosses into a worker: one chunk and the few settings the format needs.

    A transport may carry the chunk's bytes beside the task instead (``chunk.data`` is then empty: see
    ``pipeline.executors.shm``) and hand them to :func:`parse_data`.
    """

    chunk: Chunk
    format: FormatKey = "combined"
    max_line_bytes: int = defaults.MAX_LINE_BYTES
    reject_bytes: int = defaults.REJECT_BYTES
    since_us: int | None = None  # run.since / run.until: rows outside are counted, not kept
    until_us: int | None = None
    transforms: tuple[TransformSpec, ...] = ()  # run.transforms, in order
    union: tuple[FormatKey, ...] = ()  # a run with several formats: every batch gets their columns
    panels: bool = False  # summarize the rows for the report's access-log panels (pipeline.report.panels)
    origin: tuple[tuple[str, str], ...] = ()  # (column, value): run.source_column, run.file_column
    # a chunk that packs several files (``chunk.segments``): each one's origin, instead of ``origin``
    origins: tuple[tuple[tuple[str, str], ...], ...] = ()

    @property
    def origin_columns(self) -> tuple[str, ...]:
        """The names of the origin columns it adds."""
        return tuple(c for c, _ in (self.origins[0] if self.origins else self.origin))


@dataclass
class Part:
    """The rows of one UTC date in a parsed chunk, as an Arrow IPC stream of its own.

    One stream per date (not one for the chunk, sliced by the writer) so that every batch the writer
    buffers owns its buffers: a slice would keep the whole chunk alive until its date's row group
    fills, and copying the slices cost the writer 10% of its CPU (every chunk of the yardstick data
    spans two UTC dates).
    """

    date: str
    rows: int
    size: int  # bytes of the IPC stream
    ipc: bytes = b""  # the stream; empty while it is in a transport's output buffer (parse_data's ``into``)


@dataclass
class ParseResult:
    """What comes back from a worker: its batch as one IPC stream per date, rejects as IPC bytes."""

    file_id: int
    seq: int
    first_line: int
    lines: int
    rows: int
    parts: list[Part]  # in date order; with ``into``, their streams lie one after the other there
    rejects: bytes
    reject_counts: dict[str, int]
    filtered: int  # rows outside run.since / run.until, or dropped by a transform
    skipped: int  # header and comment lines (a W3C file's directives): neither rows nor rejects
    transform_s: dict[str, float]  # seconds in each transform
    in_bytes: int  # size of the chunk's data
    busy_s: float  # wall time inside the worker
    cpu_s: float  # CPU time of the worker process for this chunk
    started: float = 0.0  # perf_counter() when the worker began (one clock for the machine's processes)
    panels: bytes = b""  # the rows' partial aggregates, when the task asked for them
    absent: tuple[str, ...] = ()  # JSON lines: mapped keys no line of the chunk has a value for
    worker: str = field(default_factory=_worker_name)  # the timeline's lane
    pid: int = field(default_factory=os.getpid)
    # a chunk that packs several files: each one's share (the fields above are their sums, and the
    # first one's file id, seq and first line); empty: the chunk is one file's
    segments: tuple[FileCounts, ...] = ()

    def files(self) -> tuple[FileCounts, ...]:
        """Each file's share of the result, in the order of their rejects in :attr:`rejects`."""
        if self.segments:
            return self.segments
        rejected = sum(self.reject_counts.values())
        return (
            FileCounts(
                self.file_id, self.seq, self.first_line, self.lines, self.rows, self.reject_counts,
                self.filtered, self.skipped, rejected, self.absent,
            ),
        )  # fmt: skip


def parse_chunk(task: ParseTask) -> ParseResult:
    """Parse one chunk. Top-level and picklable: this is what crosses to a worker."""
    return parse_data(task, task.chunk.data)


def parse_data(task: ParseTask, data: bytes | memoryview, into: memoryview | None = None) -> ParseResult:
    """Parse ``data``, the bytes of ``task.chunk`` (which a transport may have emptied). With ``into``,
    the batch's IPC streams are written there, one after the other, and the parts' ``ipc`` left empty;
    streams that do not fit come back in the result as usual."""
    # the CPU of this thread: in a worker process that is the parse; with parse.executor = "thread"
    # the process's CPU would also count the other threads
    t0, c0 = time.perf_counter(), time.thread_time()
    chunk = task.chunk
    # a packed chunk is parsed in one call, its lines numbered in the data; the unpacker gives each
    # row, reject and count back to its file
    unpack = Unpacker(chunk.segments) if chunk.segments else None
    first = 1 if unpack is not None else chunk.first_line
    parse = get_format(task.format).parse
    result = parse(data, first, task.max_line_bytes, task.reject_bytes)
    skipped, absent = result.skipped, result.absent  # the steps below make results of their own
    if unpack is not None:
        unpack.parsed(result.rows, result.rejects, result.valued)
    if task.union:
        result = replace(result, batch=conform(result.batch, union_schema(task.union)))
    filtered = 0
    if task.since_us is not None or task.until_us is not None:
        result, filtered = keep_between(result, task.since_us, task.until_us)
    if (
        task.origin or task.origins
    ):  # after the filter (fewer rows), before the transforms (they may use them)
        result = replace(result, batch=_add_origin(result.batch, task, unpack, result.rows))
    transform_s: dict[str, float] = {}
    if task.transforms:
        result, dropped, transform_s = _transform(task, data, result, first, unpack)
        filtered += dropped
    panels = b""
    if task.panels:
        from pipeline.report.panels import summarize  # pyarrow.compute: kept out of runs without a report

        panels = summarize(result.batch)
    rejects = RejectRows()
    rejects.extend(chunk.rejects)  # lines the reader had to reject (too long, truncated)
    rejects.extend(result.rejects)
    reject_batch = rejects_batch(rejects)
    segments: tuple[FileCounts, ...] = ()
    if unpack is not None:
        readers = {k: rejects_batch(s.rejects) for k, s in enumerate(chunk.segments) if len(s.rejects)}
        reject_batch, segments = unpack.finish(reject_batch, readers, result.rows, filtered, skipped)
    slices = [result.batch.slice(offset, length) for _, offset, length in result.partitions]
    sizes = _ipc_into(slices, into) if into is not None else None
    if sizes is None:  # no buffer, or the streams did not fit in it: they go back in the result
        streams = [to_ipc(piece) for piece in slices]
        sizes = [len(stream) for stream in streams]
    else:
        streams = [b""] * len(slices)
    parts = [
        Part(date, length, size, stream)
        for (date, _, length), size, stream in zip(result.partitions, sizes, streams, strict=True)
    ]
    return ParseResult(
        file_id=chunk.file_id,
        seq=chunk.seq,
        first_line=chunk.first_line,
        lines=chunk.n_lines,
        rows=result.batch.num_rows,
        parts=parts,
        rejects=to_ipc(reject_batch),
        reject_counts=_sum_counts(segments) if segments else rejects.counts(),
        filtered=filtered,
        skipped=skipped,
        transform_s=transform_s,
        in_bytes=len(data),
        busy_s=time.perf_counter() - t0,
        cpu_s=time.thread_time() - c0,
        started=t0,
        panels=panels,
        absent=absent,
        segments=segments,
    )


def _sum_counts(files: tuple[FileCounts, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in files:
        for reason, n in f.reject_counts.items():
            out[reason] = out.get(reason, 0) + n
    return out


def _transform(
    task: ParseTask, data: bytes | memoryview, result: FormatResult, first: int, unpack: Unpacker | None
) -> tuple[FormatResult, int, dict[str, float]]:
    """Run the chunk's rows through ``task.transforms``: the new rows grouped by date, how many rows the
    transforms dropped, and the seconds each took. Rows routed to the rejects join the chunk's rejects
    with their raw line (``first``: the number of the data's first line). A packed chunk's files are
    transformed apart, each row with its line in its own file."""
    rows = result.rows if result.rows is not None else np.zeros(0, dtype=np.int64)
    schema = _schema(task.union or (task.format,), task.transforms, task.origin_columns)

    def run(table: pa.Table, lines: np.ndarray) -> Applied:
        return apply(task.transforms, table, lines, schema)

    table = pa.Table.from_batches([result.batch])
    try:
        applied = run(table, first + rows) if unpack is None else unpack.per_file(run, table, first + rows)
    except TransformError as exc:
        # the cause's type and message are in the text: a chained cause does not cross the process boundary
        raise TransformError(f"{exc} (rows of {task.chunk.path}, {task.chunk.line_range})") from exc
    rejects = result.rejects
    if applied.rejects:
        a = np.frombuffer(data, dtype=np.uint8)
        starts, ends, _, _ = line_bounds(a)
        for line, reason in applied.rejects:
            k = line - first
            rejects.add(line, reason, bytes(data[starts[k] : ends[k]]), task.reject_bytes)
    table = applied.table.combine_chunks()
    batches = table.to_batches()
    batch = batches[0] if batches else empty_batch(table.schema)

    def build(order: np.ndarray | None) -> pa.RecordBatch:
        return batch if order is None else batch.take(int64_array(order))

    rows = Rows(np.floor_divide(timestamps(batch), DAY_US), applied.lines - first, rejects, build)
    return finish(rows), applied.filtered, applied.seconds


@lru_cache(maxsize=16)
def _schema(
    formats: tuple[FormatKey, ...], transforms: tuple[TransformSpec, ...], origin: tuple[str, ...]
) -> pa.Schema:
    return output_schema(transforms, with_origin(union_schema(formats), origin))


# the origin columns' type: one value per file, so a dictionary of one string and indices all zero
ORIGIN_TYPE = pa.dictionary(pa.int32(), pa.string())


def with_origin(schema: pa.Schema, columns: tuple[str, ...]) -> pa.Schema:
    """``schema`` and the origin columns (run.source_column, run.file_column) after its own."""
    return pa.schema([*schema, *(pa.field(c, ORIGIN_TYPE) for c in columns)]) if columns else schema


def _add_origin(
    batch: pa.RecordBatch, task: ParseTask, unpack: Unpacker | None, rows: np.ndarray | None
) -> pa.RecordBatch:
    """``batch`` with the task's origin columns after its own: one value per (column, value) of
    ``task.origin``; a packed chunk's rows (their lines: ``rows``) each their own file's."""
    if unpack is not None:
        added = unpack.origin_columns(task.origins, rows)
    else:
        added = [constant_dictionary(value, batch.num_rows) for _, value in task.origin]
    columns = [*batch.columns, *added]
    return pa.RecordBatch.from_arrays(columns, schema=with_origin(batch.schema, task.origin_columns))


def rejects_batch(rejects: RejectRows) -> pa.RecordBatch:
    """The rejects of a chunk as an Arrow batch (see :data:`REJECT_SCHEMA`); the blank ones (kept as
    arrays of line numbers) are built without a Python object per line and merged in line order."""
    columns = [
        int64_array(rejects.lines),
        binary_array([r.encode() for r in rejects.reasons], pa.string()),
        binary_array(rejects.raw),
        int64_array(rejects.raw_len),
    ]
    if not rejects.blank:
        return pa.RecordBatch.from_arrays(columns, schema=REJECT_SCHEMA)
    pieces = [columns]
    for reason, lines in rejects.blank:
        n = len(lines)
        no_bytes = pa.Array.from_buffers(
            pa.binary(), n, [None, pa.py_buffer(np.zeros(n + 1, dtype=np.int32)), pa.py_buffer(b"")]
        )
        pieces.append([int64_array(lines), repeat_string(reason, n), no_bytes, int64_array(np.zeros(n))])
    merged = pa.RecordBatch.from_arrays(
        [pa.concat_arrays(list(column)) for column in zip(*pieces, strict=True)], schema=REJECT_SCHEMA
    )
    numbers = np.concatenate(
        [np.asarray(rejects.lines, dtype=np.int64)] + [lines for _, lines in rejects.blank]
    )
    if np.all(numbers[1:] >= numbers[:-1]):
        return merged
    return merged.take(int64_array(np.argsort(numbers, kind="stable")))


def to_ipc(batch: pa.RecordBatch) -> bytes:
    """Serialise a batch as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _ipc_into(batches: list[pa.RecordBatch], target: memoryview) -> list[int] | None:
    """Write each batch as an IPC stream of its own into ``target``, one after the other (a slice is
    written with only its own rows' data); their sizes, or None if they do not all fit."""
    sizes = []
    pos = 0
    for batch in batches:
        sink = pa.FixedSizeBufferWriter(pa.py_buffer(target[pos:]))
        try:
            with pa.ipc.new_stream(sink, batch.schema) as writer:
                writer.write_batch(batch)
        except (pa.ArrowInvalid, pa.ArrowIOError, OSError):  # ran past the end of the block
            return None
        sizes.append(int(sink.tell()))
        pos += sizes[-1]
    return sizes


def from_ipc(data: bytes) -> pa.RecordBatch:
    """Read back a batch written by :func:`to_ipc` (zero-copy over ``data``)."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()

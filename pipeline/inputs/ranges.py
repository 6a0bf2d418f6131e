"""Byte-range reads: remote inputs parsed by Dask workers that fetch their own bytes.

With ``parse.executor = "dask"``, a remote input (:func:`pipeline.inputs.remote.is_url`) that is not
compressed and a run that is not incremental (nor a ``logpipe profile`` sample), the driver does not
download the object: :func:`probe` reads its first bytes (one small ranged request, for the
compression's magic), :func:`plan` cuts its listed size every ``read.chunk_bytes``, and each range
travels to a worker as a :class:`RangeChunk` (no bytes: the real URL, the storage options, start and
end). The worker (:func:`parse_range`) fetches its range with the retries and timeout of
:mod:`pipeline.inputs.remote` and aligns it to lines the way Hadoop's line reader does: a range owns the
lines that *start* in ``[start, end)``, so it skips a partial first line (unless ``start == 0`` or byte
``start - 1`` is a newline) and reads past ``end`` to finish its last line. A last line longer than
``read.max_line_bytes`` is read to its end without being kept and rejected as too long, as the local
reader does (one inside the range is rejected by the parse, as in a chunk). The last line of the object
without a final newline is still a line.

A worker only knows its lines' numbers relative to its range (1, 2, ...). :class:`Renumber`, in the
driver's collect thread, holds a range's result until the ranges before it in the same file have
reported their line counts, then adds the lines before it to its rejects' numbers and its first line
(the rows carry no line number) and hands it on; once a file's last range is handed on it gives the
file's report (lines, bytes, chunks) for the manifest. Held results keep their executor slots, so no
more than ``max_in_flight`` are ever held; the ranges of a file are submitted in order, so the one a
held result waits for is always out already (no deadlock).

A range whose read fails after the retries fails its file as on the driver (:class:`Renumber`): the
lines of the ranges before it are kept, the file is reported failed. Each range's answer must carry
the ETag and size the driver listed (:func:`pipeline.inputs.remote.fetch_range`): a range of an object
replaced
meanwhile fails its file, never mixes two versions. Not done: compressed objects, incremental runs,
objects of unknown or zero size and those of a server that ignores Range stay on the driver path;
``run.format = "auto"`` still reads the first 4 MiB on the driver to recognise the format.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa

from pipeline.formats.base import Reason, RejectRows
from pipeline.inputs import remote
from pipeline.stages.parse import ParseResult, ParseTask, from_ipc, parse_data, to_ipc
from pipeline.stages.read import BOM, Chunk, FileRead, detect_compression

HEAD_BYTES = 64  # the driver's one request per object: enough for every compression's magic
TAIL_BYTES = 64 << 10  # a range's last line is finished with requests of this size (doubling)
TAIL_MAX_BYTES = 4 << 20  # up to this size: an over-long line is read through in bounded steps


@dataclass(frozen=True)
class ByteRange:
    """Where a worker reads its bytes: ``url`` is the real URL (it may hold credentials: never shown),
    ``name`` the display name, ``size`` the object's listed size."""

    name: str
    url: str
    settings: remote.Settings
    size: int
    start: int
    end: int
    etag: str = ""  # as listed: every range's answer must carry it (HTTP), or the read fails


@dataclass
class RangeChunk(Chunk):
    """A chunk whose bytes are not here: a worker reads ``source`` (line numbers relative to it)."""

    source: ByteRange | None = None


def probe(name: str) -> ByteRange | None:
    """The whole object ``name`` as a range, if it can be cut into ranges: listed with a size, not
    empty, and not compressed (one request of :data:`HEAD_BYTES`); None otherwise, or when it cannot be
    read (the driver's reader then reports why)."""
    try:
        entry = remote.lookup(name)
        if not entry.size:
            return None
        stream = remote.RemoteStream(entry, HEAD_BYTES)
        try:
            head = stream.peek(8)
        finally:
            stream.close()
    except OSError:
        return None
    if detect_compression(head) != "none" or stream.range_ignored:
        return None  # a server that ignores Range: each range would re-read the object from its start
    return ByteRange(name, entry.url, entry.settings, entry.size, 0, entry.size, entry.etag)


def plan(size: int, chunk_bytes: int) -> list[tuple[int, int]]:
    """``[start, end)`` ranges of ``chunk_bytes`` covering ``size`` bytes (none for an empty object)."""
    step = max(1, chunk_bytes)
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def chunks(file_id: int, whole: ByteRange, chunk_bytes: int) -> list[RangeChunk]:
    """The ranges of ``whole`` as chunks to submit, in file order (``seq`` is the range's index)."""
    return [
        RangeChunk(file_id, whole.name, seq, 1, b"", 0, source=replace(whole, start=start, end=end))
        for seq, (start, end) in enumerate(plan(whole.size, chunk_bytes))
    ]


class _Fetcher:
    """Ranged requests of one object, on a worker, with :mod:`pipeline.inputs.remote`'s retries and
    timeout."""

    def __init__(self, br: ByteRange):
        fs, fs_path = remote._filesystem(br.url, br.settings)
        self.entry = remote.RemoteFile(br.name, br.url, fs, fs_path, br.settings, size=br.size, etag=br.etag)
        self.size = br.size

    def get(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (clamped to the listed size); the object must have them all."""
        end = min(end, self.size)
        if end <= start:
            return b""
        what = f"read: {self.entry.name} at byte {start:,}"
        data = remote.fetch_range(self.entry, start, end)
        if len(data) != end - start:
            raise remote.RemoteReadError(
                f"{what}: asked {end - start} bytes, got {len(data)} (the object changed while it was"
                " read, or the server ignores Range requests)"
            )
        return data


def read_range(br: ByteRange, max_line_bytes: int, reject_bytes: int) -> tuple[bytes, int, RejectRows]:
    """The lines that start in ``[br.start, br.end)``: their bytes (each ending in a newline), how many
    lines (a last one too long to keep included) and the reader's rejects, numbered from 1."""
    f = _Fetcher(br)
    lo = br.start - 1 if br.start > 0 else 0
    data = f.get(lo, br.end)
    if br.start > 0:
        nl = data.find(b"\n")
        if nl < 0 or lo + nl + 1 >= br.end:
            return b"", 0, RejectRows()  # no line starts here: the range before owns them all
        data = data[nl + 1 :]
    else:
        data = data.removeprefix(BOM)  # not data, as in the reader
    rejects = RejectRows()
    if data.endswith(b"\n"):
        return data, data.count(b"\n"), rejects
    cut = data.rfind(b"\n") + 1  # where the unfinished last line starts
    body, last = data[:cut], [data[cut:]]
    cap = max(max_line_bytes, reject_bytes) + 1  # of a longer line only its head is kept (a reject)
    length = kept = len(last[0])
    pos, step = br.end, TAIL_BYTES
    while pos < br.size:  # to the next newline, or the object's end: either ends the line
        more = f.get(pos, pos + step)
        pos += len(more)
        step = min(2 * step, TAIL_MAX_BYTES)
        nl = more.find(b"\n")
        piece = more if nl < 0 else more[:nl]
        length += len(piece)
        if kept < cap:
            last.append(piece[: cap - kept])
            kept += len(last[-1])
        if nl >= 0:
            break
    n = body.count(b"\n")
    line = b"".join(last)
    if length > max_line_bytes:
        rejects.add(n + 1, Reason.TOO_LONG, line[:reject_bytes], reject_bytes, length=length)
        return body, n + 1, rejects
    return body + line + b"\n", n + 1, rejects


def parse_range(task: ParseTask) -> ParseResult:
    """Read and parse the range of ``task.chunk`` (a :class:`RangeChunk`): what a worker runs."""
    chunk = task.chunk
    if not isinstance(chunk, RangeChunk) or chunk.source is None:
        raise TypeError("parse_range needs a RangeChunk")
    failed: remote.RemoteReadError | None = None
    try:
        data, n_lines, rejects = read_range(chunk.source, task.max_line_bytes, task.reject_bytes)
    except remote.RemoteReadError as exc:
        # to the driver without its cause and context (raised outside the handler): a client
        # library's exception may not pickle (aiohttp's)
        failed = remote.RemoteReadError(str(exc))
        failed.status = exc.status
    if failed is not None:
        raise failed
    plain = Chunk(chunk.file_id, chunk.path, chunk.seq, 1, data, n_lines, rejects)
    return parse_data(replace(task, chunk=plain), data)


@dataclass
class _File:
    whole: ByteRange
    starts: list[int]  # each range's first byte
    next_seq: int = 0
    lines: int = 0  # lines of the ranges handed on
    held: dict[int, ParseResult] = field(default_factory=dict)
    failed: int | None = None  # the first range whose read failed: it and the later ones are dropped
    error: str | None = None
    reported: bool = False


class Renumber:
    """The collect thread's side: ranges' results put in file order and numbered (thread-safe).

    A range whose read failed (after the retries) fails its file as a failed read does on the driver:
    the ranges before it are kept, it and the ones after it are dropped, the file's report carries the
    error (the run exits with ``INPUTS_FAILED``)."""

    def __init__(self) -> None:
        self._files: dict[int, _File] = {}
        self._lock = threading.Lock()

    def expect(self, file_id: int, todo: list[RangeChunk]) -> None:
        """Input ``file_id`` is read as the ranges ``todo`` (called before the first is submitted)."""
        starts = [c.source.start for c in todo if c.source is not None]
        assert todo and todo[0].source is not None and len(starts) == len(todo)
        whole = replace(todo[0].source, start=0, end=todo[0].source.size)
        with self._lock:
            self._files[file_id] = _File(whole, starts)

    def take(self, result: ParseResult) -> tuple[list[ParseResult], int, FileRead | None]:
        """The results that can move on now that ``result`` is in (file order, numbered), how many
        results were dropped (their file failed before them), and the file's report once its last
        range (or the last one before a failure) has moved on."""
        with self._lock:
            f = self._files[result.file_id]
            if f.failed is not None and result.seq >= f.failed:
                return [], 1, None
            f.held[result.seq] = result
            return self._advance(f, 0)

    def fail(self, file_id: int, seq: int, error: str) -> tuple[list[ParseResult], int, FileRead | None]:
        """Range ``seq`` of ``file_id`` could not be read; as :meth:`take` (it is dropped itself)."""
        with self._lock:
            f = self._files[file_id]
            if f.failed is None or seq < f.failed:
                f.failed, f.error = seq, error
            return self._advance(f, 1)

    def _advance(self, f: _File, dropped: int) -> tuple[list[ParseResult], int, FileRead | None]:
        end = len(f.starts) if f.failed is None else f.failed
        ready = []
        while f.next_seq < end and f.next_seq in f.held:
            r = f.held.pop(f.next_seq)
            ready.append(renumbered(r, f.lines))
            f.lines += r.lines
            f.next_seq += 1
        for seq in [seq for seq in f.held if seq >= end]:
            del f.held[seq]
            dropped += 1
        report = None
        if f.next_seq == end and not f.reported:
            f.reported = True
            read = f.whole.size if f.failed is None else f.starts[f.failed]
            report = FileRead(f.whole.name, "none", f.whole.size, read, f.lines, end, f.error, read)
        return ready, dropped, report


def renumbered(result: ParseResult, before: int) -> ParseResult:
    """``result`` with ``before`` lines ahead of it: its first line and its rejects' numbers moved,
    the rejects in line order (the reader's reject of a range's last line comes first)."""
    result.first_line = before + 1
    batch = from_ipc(result.rejects)
    if batch.num_rows == 0 and before == 0:
        return result
    lines = batch.column("line").to_numpy() + before
    order = np.argsort(lines, kind="stable")
    columns = [pa.array(lines[order], pa.int64())]
    columns += [batch.column(i).take(pa.array(order)) for i in range(1, batch.num_columns)]
    result.rejects = to_ipc(pa.RecordBatch.from_arrays(columns, schema=batch.schema))
    return result

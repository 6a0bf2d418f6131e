"""Parse stage (processes): turn a chunk into an Arrow batch, rejects and the worker's own timing.

Parsing is CPU work, so it runs in a process pool: one GIL per process. :func:`parse_chunk` is the
process boundary: a top-level, picklable function that takes a :class:`ParseTask` (the chunk's bytes)
and returns a :class:`ParseResult` whose batch and rejects are Arrow IPC *bytes*: the boundary ships a
few large buffers, never a Python object per line.

Executors hide *where* :func:`parse_chunk` runs behind one small interface (:class:`ParseExecutor`):
``submit(task) -> Future`` and ``shutdown()``. :class:`ProcessExecutor` is the local process pool;
:class:`InlineExecutor` runs in the calling thread (the serial reference). A cluster executor (Dask)
plugs in the same way without touching the stages.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import queue
import select
import signal
import threading
import time
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from functools import lru_cache
from multiprocessing import shared_memory
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from pipeline import forkserver
from pipeline.arrays import binary_array, int64_array
from pipeline.errors import StageError
from pipeline.formats import FormatKey, conform, get_format, union_schema
from pipeline.formats.base import FormatResult, RejectRows
from pipeline.formats.vector import by_date, keep_between, line_bounds, sort_rejects
from pipeline.read import Chunk
from pipeline.transforms import TransformError, TransformSpec, apply, output_schema

log = logging.getLogger(__name__)

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
    thread) by its name."""
    thread = threading.current_thread()
    return f"pid {os.getpid()}" if thread is threading.main_thread() else thread.name


@dataclass
class ParseTask:
    """What crosses into a worker: one chunk and the few settings the format needs.

    With shared memory (see :class:`SharedSlot`), ``chunk.data`` is empty and the bytes are in the
    block ``shm_in``; the worker writes its batch's streams into ``shm_out`` instead of returning them.
    """

    chunk: Chunk
    format: FormatKey = "combined"
    max_line_bytes: int = 1 << 20
    reject_bytes: int = 4096
    shm_in: str | None = None
    shm_len: int = 0
    shm_out: str | None = None
    since_us: int | None = None  # run.since / run.until: rows outside are counted, not kept
    until_us: int | None = None
    transforms: tuple[TransformSpec, ...] = ()  # run.transforms, in order
    union: tuple[FormatKey, ...] = ()  # a run with several formats: every batch gets their columns
    panels: bool = False  # summarize the rows for the report's access-log panels (pipeline.panels)


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
    ipc: bytes = b""  # the stream; empty while it is in the task's shm_out block (see SharedSlot.unload)


@dataclass
class ParseResult:
    """What comes back from a worker: its batch as one IPC stream per date, rejects as IPC bytes."""

    file_id: int
    seq: int
    first_line: int
    lines: int
    rows: int
    parts: list[Part]  # in date order; their streams lie one after the other in shm_out until unloaded
    rejects: bytes
    reject_counts: dict[str, int]
    filtered: int  # rows outside run.since / run.until, or dropped by a transform
    transform_s: dict[str, float]  # seconds in each transform
    in_bytes: int  # size of the chunk's data
    busy_s: float  # wall time inside the worker
    cpu_s: float  # CPU time of the worker process for this chunk
    started: float = 0.0  # perf_counter() when the worker began (one clock for the machine's processes)
    panels: bytes = b""  # the rows' partial aggregates, when the task asked for them
    worker: str = field(default_factory=_worker_name)  # the timeline's lane
    pid: int = field(default_factory=os.getpid)


def parse_chunk(task: ParseTask) -> ParseResult:
    """Parse one chunk. Top-level and picklable: this is the process boundary."""
    # the CPU of this thread: in a worker process that is the parse; with parse.executor = "thread"
    # the process's CPU would also count the other threads
    t0, c0 = time.perf_counter(), time.thread_time()
    chunk = task.chunk
    parse = get_format(task.format).parse
    data = chunk.data if task.shm_in is None else _attach(task.shm_in)[: task.shm_len]
    result = parse(data, chunk.first_line, task.max_line_bytes, task.reject_bytes)
    if task.union:
        result = replace(result, batch=conform(result.batch, union_schema(task.union)))
    filtered = 0
    if task.since_us is not None or task.until_us is not None:
        result, filtered = keep_between(result, task.since_us, task.until_us)
    transform_s: dict[str, float] = {}
    if task.transforms:
        result, dropped, transform_s = _transform(task, data, result)
        filtered += dropped
    panels = b""
    if task.panels:
        from pipeline.panels import summarize  # pyarrow.compute: kept out of runs without a report

        panels = summarize(result.batch)
    rejects = RejectRows()
    rejects.extend(chunk.rejects)  # lines the reader had to reject (too long, truncated)
    rejects.extend(result.rejects)
    slices = [result.batch.slice(offset, length) for _, offset, length in result.partitions]
    sizes = _ipc_into(slices, _attach(task.shm_out)) if task.shm_out is not None else None
    if sizes is None:  # no slot, or the streams did not fit in it: they go through the pipe
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
        rejects=to_ipc(rejects_batch(rejects)),
        reject_counts=rejects.counts(),
        filtered=filtered,
        transform_s=transform_s,
        in_bytes=task.shm_len if task.shm_in is not None else len(chunk.data),
        busy_s=time.perf_counter() - t0,
        cpu_s=time.thread_time() - c0,
        started=t0,
        panels=panels,
    )


def _transform(
    task: ParseTask, data: bytes | memoryview, result: FormatResult
) -> tuple[FormatResult, int, dict[str, float]]:
    """Run the chunk's rows through ``task.transforms``: the new rows grouped by date, how many rows the
    transforms dropped, and the seconds each took. Rows routed to the rejects join the chunk's rejects
    with their raw line."""
    first = task.chunk.first_line
    rows = result.rows if result.rows is not None else np.zeros(0, dtype=np.int64)
    schema = _schema(task.union or (task.format,), task.transforms)
    try:
        applied = apply(task.transforms, pa.Table.from_batches([result.batch]), first + rows, schema)
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
        sort_rejects(rejects)
    table = applied.table.combine_chunks()
    batches = table.to_batches()
    batch = (
        batches[0]
        if batches
        else pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in table.schema], schema=table.schema)
    )
    batch, dates, order = by_date(batch)
    lines = applied.lines if order is None else applied.lines[order]
    return FormatResult(batch, dates, rejects, lines - first), applied.filtered, applied.seconds


@lru_cache(maxsize=16)
def _schema(formats: tuple[FormatKey, ...], transforms: tuple[TransformSpec, ...]) -> pa.Schema:
    return output_schema(transforms, union_schema(formats))


def rejects_batch(rejects: RejectRows) -> pa.RecordBatch:
    """The rejects of a chunk as an Arrow batch (see :data:`REJECT_SCHEMA`)."""
    return pa.RecordBatch.from_arrays(
        [
            int64_array(rejects.lines),
            binary_array([r.encode() for r in rejects.reasons], pa.string()),
            binary_array(rejects.raw),
            int64_array(rejects.raw_len),
        ],
        schema=REJECT_SCHEMA,
    )


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


# Shared-memory blocks this worker process has attached to, by name (attached once, kept open).
_ATTACHED: dict[str, shared_memory.SharedMemory] = {}


def _attach(name: str) -> memoryview:
    """The memory of the shared block ``name`` (attached on first use, then kept)."""
    block = _ATTACHED.get(name)
    if block is None:
        block = _ATTACHED[name] = shared_memory.SharedMemory(name)
    return _buf(block)


def _buf(block: shared_memory.SharedMemory) -> memoryview:
    buf = block.buf
    if buf is None:
        raise ValueError(f"shared memory block {block.name} is closed")
    return buf


@dataclass
class SharedSlot:
    """A pair of shared-memory blocks for one chunk in flight: its bytes in, its batch out.

    Sending a 4 MiB chunk through a pipe costs a pickle, a 64 KiB-at-a-time copy under the main
    process's GIL, and the worker waits for all of it before it can start; the batch coming back costs
    the same again. With slots, the main process copies the chunk into ``inp`` (one memcpy), the
    worker parses it in place and writes its Arrow batch straight into ``out``; only small
    descriptors cross the pipe. The main process owns (creates and unlinks) every block.
    """

    inp: shared_memory.SharedMemory
    out: shared_memory.SharedMemory

    @classmethod
    def create(cls, in_bytes: int, out_bytes: int) -> SharedSlot:
        """Create both blocks, every page allocated now (raises OSError where shared memory is
        unavailable or too full for them)."""
        inp = _create_block(in_bytes)
        try:
            out = _create_block(out_bytes)
        except OSError:
            _unlink(inp)
            raise
        return cls(inp, out)

    @staticmethod
    def footprint(in_bytes: int, out_bytes: int) -> int:
        """What one slot takes of /dev/shm: its two blocks, in whole pages."""
        return _whole_pages(in_bytes) + _whole_pages(out_bytes)

    def load(self, task: ParseTask) -> ParseTask | None:
        """The task with its bytes moved into this slot; None if they do not fit."""
        data = task.chunk.data
        if len(data) > self.inp.size:
            return None
        _buf(self.inp)[: len(data)] = data
        chunk = replace(task.chunk, data=b"")
        return replace(task, chunk=chunk, shm_in=self.inp.name, shm_len=len(data), shm_out=self.out.name)

    def unload(self, result: ParseResult) -> ParseResult:
        """The result with its streams copied out of the slot, so the slot can be reused at once."""
        if result.parts and not result.parts[0].ipc:  # in the slot (else they came through the pipe)
            buf, pos = _buf(self.out), 0
            for part in result.parts:
                part.ipc = bytes(buf[pos : pos + part.size])
                pos += part.size
        return result

    def close(self) -> None:
        """Unlink both blocks."""
        _unlink(self.inp)
        _unlink(self.out)


def _create_block(size: int) -> shared_memory.SharedMemory:
    """A new shared-memory block of ``size`` bytes whose pages are all allocated now.

    ``SharedMemory(create=True)`` only sets the size (ftruncate): on tmpfs the pages come on first
    write, and where /dev/shm is full by then that write is a SIGBUS, in the main process (which
    dies without a word) or in a worker (which the pool replaces, and it dies again). Allocating
    up front turns a shortage into ENOSPC here, at start, where the caller can fall back to pipes.
    The block stays an ordinary ``SharedMemory`` (same registration with the resource tracker, same
    unlink); the descriptor it keeps from ``shm_open`` is not in the typing stubs, hence ``getattr``.
    """
    block = shared_memory.SharedMemory(create=True, size=size)
    fd: int = getattr(block, "_fd", -1)  # -1: no POSIX descriptor (Windows)
    if fd >= 0 and hasattr(os, "posix_fallocate"):  # macOS has no posix_fallocate and no tmpfs limit
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            _unlink(block)
            raise
    return block


def _whole_pages(size: int) -> int:
    return -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


# Where POSIX shared memory (the slots, and the pool's semaphores) lives on Linux: a tmpfs, which
# containers get small unless told otherwise (Docker's and Kubernetes' defaults).
SHM_DIR = "/dev/shm"
# The slots take at most this share of what /dev/shm has free: the rest is headroom for the pool's
# semaphores (a restarted pool needs new ones) and for other users of the same /dev/shm.
SHM_SHARE = 0.5


def shm_free_bytes() -> int | None:
    """Bytes free in :data:`SHM_DIR`; None where there is no such file system to ask (macOS keeps
    POSIX shared memory elsewhere, without a size limit of its own)."""
    try:
        st = os.statvfs(SHM_DIR)
    except (OSError, AttributeError):  # no /dev/shm; no statvfs (Windows)
        return None
    return st.f_bavail * st.f_frsize


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


# What to do about a /dev/shm too small, for every message that reports one.
_SHM_BIGGER = (
    f"give the container a bigger {SHM_DIR} (docker run --shm-size; Kubernetes: an emptyDir volume "
    "with medium: Memory mounted there)"
)


def _unlink(block: shared_memory.SharedMemory) -> None:
    try:
        block.close()
        block.unlink()
    except (OSError, BufferError) as exc:  # already gone, or still referenced: logged, not fatal
        log.debug("shared memory %s: %s", block.name, exc)


def from_ipc(data: bytes) -> pa.RecordBatch:
    """Read back a batch written by :func:`to_ipc` (zero-copy over ``data``)."""
    return pa.ipc.open_stream(pa.py_buffer(data)).read_next_batch()


class ParseExecutor(Protocol):
    """Where parse work runs. Implementations: process pool, inline; later a Dask cluster."""

    workers: int

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Start parsing ``task``; the future holds its result or a :class:`StageError`."""
        ...

    def shutdown(self, cancel: bool = False) -> None:
        """Stop, waiting for running work; ``cancel`` drops work that has not started."""
        ...


class InlineExecutor:
    """Runs :func:`parse_chunk` in the calling thread: the serial reference and a debugging aid."""

    workers = 1

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Parse now; return an already finished future."""
        fut: Future[ParseResult] = Future()
        try:
            fut.set_result(parse_chunk(task))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(_wrap(task, exc))
        return fut

    def shutdown(self, cancel: bool = False) -> None:
        """Nothing to stop."""


def _worker_init(main_pid: int) -> None:
    # The terminal's Ctrl-C goes to the whole process group: the main process decides how to stop,
    # workers just finish their chunk. One Arrow thread each: the pool already uses every core.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    threading.Thread(target=_exit_with, args=(main_pid,), name="watchdog", daemon=True).start()


def _exit_with(pid: int) -> None:
    """End this worker when the main process ``pid`` is gone (e.g. SIGKILLed by the OOM killer).

    Without this, workers wait forever on a call queue whose write end they hold themselves, and keep
    the fork server and the shared-memory blocks alive. A pidfd wakes us exactly when ``pid`` exits
    (and cannot be fooled by pid reuse); where there is none, poll.
    """
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        select.select([fd], [], [])
    else:
        while True:
            time.sleep(1.0)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                continue
    os._exit(1)


def _pool_error(what: str, exc: BaseException, task: ParseTask | None = None) -> StageError:
    """A :class:`StageError` for the pool itself failing (not a chunk's data): what was being done,
    the cause, and for ENOSPC where to look (the pool's semaphores live in /dev/shm)."""
    hint = ""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        hint = f" ({SHM_DIR} is full, and the pool's semaphores live there: {_SHM_BIGGER})"
    chunk = task.chunk if task is not None else None
    err = StageError(
        "parse",
        f"{what}: {type(exc).__name__}: {exc}{hint}",
        file=chunk.path if chunk is not None else None,
        chunk=chunk.line_range if chunk is not None else None,
    )
    err.__cause__ = exc
    return err


def _wrap(task: ParseTask, exc: BaseException) -> StageError:
    err = StageError(
        "parse", f"{type(exc).__name__}: {exc}", file=task.chunk.path, chunk=task.chunk.line_range
    )
    err.__cause__ = exc
    return err


class ProcessExecutor:
    """A process pool that survives its workers being killed, fed through shared memory.

    The standard ``multiprocessing.Pool`` hangs forever when a worker dies (CPython gh-66587).
    ``ProcessPoolExecutor`` instead fails every pending future with :class:`BrokenProcessPool`; this
    class then starts a fresh pool and resubmits the lost chunks, each at most ``max_retries`` times,
    after which the chunk's future fails with a :class:`StageError` naming its file and lines.
    Workers start from an explicit ``forkserver`` (or ``spawn``) context: forking a process that already
    runs reader and writer threads can deadlock on locks those threads hold.

    ``slot_bytes`` > 0 gives each of the ``2 x workers`` chunks in flight a :class:`SharedSlot` of that
    size, as many as fit in half of what /dev/shm has free; chunks that do not fit, or find no free
    slot, or a system without shared memory, fall back to the pipe.

    Nothing that goes wrong in the pool's machinery (a worker that cannot be started, a pool that
    cannot be restarted) is left in a thread of its own: it fails the chunks' futures with a
    :class:`StageError`, so the run ends with that error instead of waiting for them forever.
    """

    def __init__(
        self, workers: int, start_method: str = "forkserver", max_retries: int = 2, slot_bytes: int = 0
    ):
        self.workers = workers
        self.max_retries = max_retries
        self.restarts = 0
        # import and warm up numpy/pyarrow once in the fork server instead of in every worker
        self._ctx = forkserver.context(start_method)
        self._lock = threading.Lock()
        self._closing = False
        self._generation = 0
        self._slots: list[SharedSlot] = []
        self._free: queue.SimpleQueue[SharedSlot] = queue.SimpleQueue()
        if slot_bytes > 0:
            self._create_slots(2 * workers, slot_bytes)
        try:
            self._pool = self._new_pool()
        except OSError as exc:  # e.g. ENOSPC: its queues' semaphores live in /dev/shm
            self._close_slots()
            raise _pool_error("cannot start the worker pool", exc) from exc
        # Retries are resubmitted from a thread of our own, never from the dying pool's callback.
        self._retries: queue.SimpleQueue[_Attempt | None] = queue.SimpleQueue()
        self._retry_thread = threading.Thread(target=self._retry_loop, name="parse-retry", daemon=True)
        self._retry_thread.start()

    def _create_slots(self, n: int, slot_bytes: int) -> None:
        """Create up to ``n`` slots: as many as fit in :data:`SHM_SHARE` of the free /dev/shm, all
        allocated now. Fewer than ``n`` is one warning, not an error: a chunk without a slot goes
        through the pipe (slower, same result)."""
        # A batch's IPC stream is about the size of its chunk (offsets replace separators);
        # one that does not fit comes back through the pipe instead.
        in_bytes, out_bytes = slot_bytes, slot_bytes + slot_bytes // 2
        each = SharedSlot.footprint(in_bytes, out_bytes)
        free = shm_free_bytes()
        fit = n if free is None else min(n, int(free * SHM_SHARE) // each)
        error: OSError | None = None
        try:
            for _ in range(fit):
                slot = SharedSlot.create(in_bytes, out_bytes)
                self._slots.append(slot)
                self._free.put(slot)
        except OSError as exc:  # no shared memory here, or someone else took the room meanwhile
            error = exc
        made = len(self._slots)
        if made == n:
            return
        then = "chunks go through pipes instead" if made == 0 else "chunks without one go through pipes"
        cause = f"{type(error).__name__}: {error}" if error is not None else ""
        if free is None or (error is not None and error.errno != errno.ENOSPC):  # not a matter of room
            log.warning("parse: cannot create shared memory (%s); %s (slower)", cause, then)
            return
        share = f"a run takes at most {SHM_SHARE:.0%} of what is free" + (f"; {cause}" if cause else "")
        room = f"too little for {n}" if made == 0 else f"room for {made} of {n}"
        log.warning(
            "parse: %s has only %s free, %s shared-memory slots of %s (%s); %s (slower). To avoid "
            "it, %s or lower read.chunk_bytes / read.max_line_bytes",
            SHM_DIR,
            _mib(free),
            room,
            _mib(each),
            share,
            then,
            _SHM_BIGGER,
        )

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers, mp_context=self._ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Send ``task`` to a worker."""
        outer: Future[ParseResult] = Future()
        slot: SharedSlot | None = None
        with contextlib.suppress(queue.Empty):
            slot = self._free.get_nowait()
        loaded = slot.load(task) if slot is not None else None
        if loaded is None and slot is not None:
            self._free.put(slot)
            slot = None
        if loaded is None and not isinstance(task.chunk.data, bytes):  # the pipe pickles; views do not
            task = replace(task, chunk=replace(task.chunk, data=bytes(task.chunk.data)))
        self._submit(_Attempt(loaded or task, outer, slot, 0, 0))
        return outer

    def _submit(self, attempt: _Attempt) -> None:
        with self._lock:
            pool = self._pool
            attempt.generation = self._generation
        try:
            inner = pool.submit(parse_chunk, attempt.task)
        except BrokenProcessPool:
            self._retry_later(attempt)
            return
        except RuntimeError as exc:  # submitted after shutdown
            self._finish(attempt, exc=_wrap(attempt.task, exc))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. OSError starting a worker; through the future
            self._finish(attempt, exc=_pool_error("cannot start a worker process", exc, attempt.task))
            return
        inner.add_done_callback(lambda f: self._done(f, attempt))

    def _done(self, inner: Future[ParseResult], attempt: _Attempt) -> None:
        # Runs in the pool's own thread, which would only log an exception raised here and leave
        # the chunk's future pending forever: every exception goes into the future.
        try:
            if inner.cancelled():
                self._finish(attempt, cancel=True)
                return
            exc = inner.exception()
            if exc is None:
                result = inner.result()
                self._finish(attempt, result=attempt.slot.unload(result) if attempt.slot else result)
            elif isinstance(exc, BrokenProcessPool):
                self._retry_later(attempt)
            else:
                self._finish(attempt, exc=_wrap(attempt.task, exc))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            self._finish(attempt, exc=_wrap(attempt.task, exc))

    def _retry_later(self, attempt: _Attempt) -> None:
        """Hand a chunk whose worker died to the retry thread; cancel it if the executor is closing.

        Checked under the lock that :meth:`shutdown` takes to set ``_closing``: a retry queued after
        the retry thread's end marker would never be answered, and the run would wait for it forever.
        """
        with self._lock:
            if not self._closing:
                self._retries.put(attempt)
                return
        self._finish(attempt, cancel=True)

    def _finish(
        self,
        attempt: _Attempt,
        result: ParseResult | None = None,
        exc: BaseException | None = None,
        cancel: bool = False,
    ) -> None:
        # the slot is free again before anyone waiting on the future can submit more
        if attempt.slot is not None:
            self._free.put(attempt.slot)
            attempt.slot = None
        # already settled (an error path after the outcome was set): the first outcome stands
        with contextlib.suppress(InvalidStateError):
            if cancel:
                attempt.outer.cancel()
            elif exc is not None:
                attempt.outer.set_exception(exc)
            else:
                attempt.outer.set_result(result)  # type: ignore[arg-type]

    def _retry_loop(self) -> None:
        """The ``parse-retry`` thread: resubmit the chunks of dead workers to a fresh pool.

        It must not die with chunks left waiting: an exception here (above all ENOSPC creating the
        new pool's semaphores in a full /dev/shm) fails this chunk's future with a
        :class:`StageError` naming the cause, and every later one's too, since the pool stays
        broken; the runner then stops with that error.
        """
        broken: Exception | None = None
        while (attempt := self._retries.get()) is not None:
            if self._closing:
                self._finish(attempt, cancel=True)
                continue
            if broken is None:
                try:
                    self._retry(attempt)
                    continue
                except Exception as exc:  # noqa: BLE001 - handed on through the futures
                    broken = exc
            what = "a worker process died and the pool could not be restarted"
            self._finish(attempt, exc=_pool_error(what, broken, attempt.task))

    def _retry(self, attempt: _Attempt) -> None:
        """Resubmit one chunk of a dead worker to a fresh pool, or fail it once it used its retries."""
        chunk = attempt.task.chunk
        if attempt.number >= self.max_retries:
            err = StageError(
                "parse",
                f"a worker process died {attempt.number + 1} time(s) on this chunk (killed, e.g. by the "
                f"OOM killer); giving up after parse.max_retries={self.max_retries}",
                file=chunk.path,
                chunk=chunk.line_range,
            )
            self._finish(attempt, exc=err)
            return
        self._restart(attempt.generation)
        attempt.number += 1
        log.warning(
            "parse: worker died; retrying %s %s (retry %d of %d)",
            chunk.path,
            chunk.line_range,
            attempt.number,
            self.max_retries,
        )
        self._submit(attempt)

    def _restart(self, broken_generation: int) -> None:
        with self._lock:
            if self._generation != broken_generation or self._closing:
                return  # another retry already replaced this pool
            old = self._pool
            self._pool = self._new_pool()
            self._generation += 1
            self.restarts += 1
        old.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the pool and free the slots. Safe to call twice.

        Without ``cancel`` it waits for the chunks being parsed. With it (a run that is being stopped
        throws its results away) the workers are terminated at once instead: a worker in the middle of
        a big chunk, or several queued behind it, kept a stopped run alive for up to a second or more.
        """
        with self._lock:
            self._closing = True
            pool = self._pool
        self._retries.put(None)
        if cancel:
            _terminate_workers(pool)
        pool.shutdown(wait=True, cancel_futures=cancel)
        self._retry_thread.join(timeout=10)
        self._close_slots()

    def _close_slots(self) -> None:
        for slot in self._slots:
            slot.close()
        self._slots = []


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM every worker of ``pool`` (Python 3.14 has ``terminate_workers()``; before it, the
    processes are only reachable through the pool's private ``_processes``). Their chunks' futures
    then fail with :class:`BrokenProcessPool`, which a closing executor does not retry."""
    terminate = getattr(pool, "terminate_workers", None)
    if callable(terminate):
        terminate()
        return
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for proc in list(processes.values()):
        with contextlib.suppress(OSError, ValueError):  # already gone, or closed
            proc.terminate()


@dataclass
class _Attempt:
    """One chunk on its way through the pool: its future, its slot, how often it was retried."""

    task: ParseTask
    outer: Future[ParseResult]
    slot: SharedSlot | None
    number: int  # retries so far
    generation: int  # the pool generation it was last submitted to


class ThreadExecutor:
    """Parses in a pool of threads of the main process.

    The parse is numpy and Arrow called from Python: it holds the GIL for much of its time, so threads
    share about one core between them. That is the point of offering it: the stage table then shows
    what the GIL costs against ``process`` (README, "Configuration"). Nothing is copied or pickled.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="parse")

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Parse in a pool thread; the future holds the result or a :class:`StageError`."""
        outer: Future[ParseResult] = Future()

        def run() -> None:
            try:
                outer.set_result(parse_chunk(task))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                outer.set_exception(_wrap(task, exc))

        try:
            inner = self._pool.submit(run)
        except RuntimeError as exc:  # submitted after shutdown
            outer.set_exception(_wrap(task, exc))
            return outer
        # a chunk that shutdown(cancel=True) drops before it starts: its caller must hear of it too
        inner.add_done_callback(lambda f: outer.cancel() if f.cancelled() else None)
        return outer

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the threads (waiting for the chunks being parsed); safe to call twice."""
        self._pool.shutdown(wait=True, cancel_futures=cancel)


def make_executor(
    kind: str, workers: int, start_method: str, max_retries: int, slot_bytes: int = 0
) -> ParseExecutor:
    """The executor named by ``parse.executor`` in the config."""
    if kind == "inline":
        return InlineExecutor()
    if kind == "thread":
        return ThreadExecutor(workers)
    if kind == "process":
        return ProcessExecutor(workers, start_method, max_retries, slot_bytes)
    raise ValueError(f"unknown parse.executor {kind!r}; allowed: process, thread, inline")

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

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from pipeline.errors import StageError
from pipeline.formats import get_format
from pipeline.formats.base import RejectRows
from pipeline.read import Chunk

log = logging.getLogger(__name__)

REJECT_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.binary()),
        ("raw_bytes", pa.int64()),
    ]
)


@dataclass
class ParseTask:
    """What crosses into a worker: one chunk and the few settings the format needs."""

    chunk: Chunk
    format: str = "combined"
    max_line_bytes: int = 1 << 20
    reject_bytes: int = 4096


@dataclass
class ParseResult:
    """What comes back from a worker. ``batch`` and ``rejects`` are Arrow IPC stream bytes."""

    file_id: int
    seq: int
    first_line: int
    lines: int
    rows: int
    batch: bytes
    partitions: list[tuple[str, int, int]]  # (date, offset, length) into the batch
    rejects: bytes
    reject_counts: dict[str, int]
    in_bytes: int  # size of the chunk's data
    busy_s: float  # wall time inside the worker
    cpu_s: float  # CPU time of the worker process for this chunk
    pid: int = field(default_factory=os.getpid)


def parse_chunk(task: ParseTask) -> ParseResult:
    """Parse one chunk. Top-level and picklable: this is the process boundary."""
    t0, c0 = time.perf_counter(), time.process_time()
    chunk = task.chunk
    parse = get_format(task.format)
    result = parse(chunk.data, chunk.first_line, task.max_line_bytes, task.reject_bytes)
    rejects = RejectRows()
    rejects.extend(chunk.rejects)  # lines the reader had to reject (too long, truncated)
    rejects.extend(result.rejects)
    return ParseResult(
        file_id=chunk.file_id,
        seq=chunk.seq,
        first_line=chunk.first_line,
        lines=chunk.n_lines,
        rows=result.batch.num_rows,
        batch=to_ipc(result.batch),
        partitions=result.partitions,
        rejects=to_ipc(rejects_batch(rejects)),
        reject_counts=rejects.counts(),
        in_bytes=len(chunk.data),
        busy_s=time.perf_counter() - t0,
        cpu_s=time.process_time() - c0,
    )


def rejects_batch(rejects: RejectRows) -> pa.RecordBatch:
    """The rejects of a chunk as an Arrow batch (see :data:`REJECT_SCHEMA`)."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array(rejects.lines, pa.int64()),
            pa.array(rejects.reasons, pa.string()),
            pa.array(rejects.raw, pa.binary()),
            pa.array(rejects.raw_len, pa.int64()),
        ],
        schema=REJECT_SCHEMA,
    )


def to_ipc(batch: pa.RecordBatch) -> bytes:
    """Serialise a batch as an Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


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


def _worker_init() -> None:
    # The terminal's Ctrl-C goes to the whole process group: the main process decides how to stop,
    # workers just finish their chunk. One Arrow thread each: the pool already uses every core.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)


def _wrap(task: ParseTask, exc: BaseException) -> StageError:
    err = StageError(
        "parse", f"{type(exc).__name__}: {exc}", file=task.chunk.path, chunk=task.chunk.line_range
    )
    err.__cause__ = exc
    return err


class ProcessExecutor:
    """A process pool that survives its workers being killed.

    The standard ``multiprocessing.Pool`` hangs forever when a worker dies (CPython gh-66587).
    ``ProcessPoolExecutor`` instead fails every pending future with :class:`BrokenProcessPool`; this
    class then starts a fresh pool and resubmits the lost chunks, each at most ``max_retries`` times,
    after which the chunk's future fails with a :class:`StageError` naming its file and lines.
    Workers start from an explicit ``forkserver`` (or ``spawn``) context: forking a process that already
    runs reader and writer threads can deadlock on locks those threads hold.
    """

    def __init__(self, workers: int, start_method: str = "forkserver", max_retries: int = 2):
        self.workers = workers
        self.max_retries = max_retries
        self.restarts = 0
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # import and warm up numpy/pyarrow once in the fork server instead of in every worker
            self._ctx.set_forkserver_preload(["pipeline.parse", "pipeline.warmup"])
        self._lock = threading.Lock()
        self._closing = False
        self._generation = 0
        self._pool = self._new_pool()
        # Retries are resubmitted from a thread of our own, never from the dying pool's callback.
        self._retries: queue.SimpleQueue[tuple[ParseTask, Future[ParseResult], int, int] | None]
        self._retries = queue.SimpleQueue()
        self._retry_thread = threading.Thread(target=self._retry_loop, name="parse-retry", daemon=True)
        self._retry_thread.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_worker_init)

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Send ``task`` to a worker."""
        outer: Future[ParseResult] = Future()
        self._submit(task, outer, 0)
        return outer

    def _submit(self, task: ParseTask, outer: Future[ParseResult], attempt: int) -> None:
        with self._lock:
            pool, generation = self._pool, self._generation
        try:
            inner = pool.submit(parse_chunk, task)
        except BrokenProcessPool:
            self._retries.put((task, outer, attempt, generation))
            return
        except RuntimeError as exc:  # submitted after shutdown
            outer.set_exception(_wrap(task, exc))
            return
        inner.add_done_callback(lambda f: self._done(f, task, outer, attempt, generation))

    def _done(
        self, inner: Future[ParseResult], task: ParseTask, outer: Future[ParseResult], attempt: int, gen: int
    ) -> None:
        if inner.cancelled():
            outer.cancel()
            return
        exc = inner.exception()
        if exc is None:
            outer.set_result(inner.result())
        elif isinstance(exc, BrokenProcessPool) and not self._closing:
            self._retries.put((task, outer, attempt, gen))
        else:
            outer.set_exception(_wrap(task, exc))

    def _retry_loop(self) -> None:
        while (item := self._retries.get()) is not None:
            task, outer, attempt, gen = item
            if self._closing:
                outer.cancel()
                continue
            if attempt >= self.max_retries:
                err = StageError(
                    "parse",
                    f"a worker process died {attempt + 1} times on this chunk (killed, e.g. by the "
                    f"OOM killer); giving up after parse.max_retries={self.max_retries}",
                    file=task.chunk.path,
                    chunk=task.chunk.line_range,
                )
                outer.set_exception(err)
                continue
            self._restart(gen)
            log.warning(
                "parse: worker died; retrying %s %s (retry %d of %d)",
                task.chunk.path,
                task.chunk.line_range,
                attempt + 1,
                self.max_retries,
            )
            self._submit(task, outer, attempt + 1)

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
        """Stop the pool. Waits for chunks being parsed (each takes well under a second)."""
        with self._lock:
            self._closing = True
            pool = self._pool
        self._retries.put(None)
        pool.shutdown(wait=True, cancel_futures=cancel)
        self._retry_thread.join(timeout=10)


def make_executor(kind: str, workers: int, start_method: str, max_retries: int) -> ParseExecutor:
    """The executor named by ``parse.executor`` in the config."""
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return ProcessExecutor(workers, start_method, max_retries)
    raise ValueError(f"unknown parse.executor {kind!r}; allowed: process, inline")

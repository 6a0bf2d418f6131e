"""The Dask executor: parse on a Dask cluster (``parse.address``), or on a ``LocalCluster`` of our own.

Imported only when ``parse.executor = "dask"``: importing distributed takes a noticeable part of a
small run (BENCHMARKS.md, "Dask executor"), which no other run should pay. The rest of the pipeline
does not change: the read threads still cut chunks in this process,
the writer threads still write here, and each chunk is one Dask task running
:func:`pipeline.stages.parse.parse_chunk` (transforms included) on a worker, its result the same
:class:`ParseResult` as from the local pool. Every worker needs the same logpipe installed (and the
modules of any custom transform); the executor checks at start that they have logpipe.

How a chunk reaches a worker: its bytes ride inside the task (``client.submit(fn, task, frame)``), as a
numpy array, so that pickle protocol 5 ships them as a frame of their own, uncopied: the driver's CPU
per chunk is what caps a cluster, and a copy into the pickle is most of it. ``client.scatter`` is not
used: it costs a round trip per chunk, pins a chunk to a worker chosen before anyone knows which will
be free, and a scattered chunk dies with its worker, so the scheduler could not recompute a lost
worker's chunks; inside the task, the scheduler holds the bytes until the task is done and hands them
to another worker if the first dies. Results come back straight from the workers
(``direct_to_workers``), not through the scheduler, their IPC streams as numpy frames too (not copied
into the result's pickle on the worker, nor out of it here). With our own LocalCluster the client
talks to the scheduler in memory (an ``inproc`` listener beside its TCP one; both on one event loop
thread: no socket and no hand-over between threads per message), and the workers are forked from a
fork server that has logpipe and Arrow loaded and warm (no interpreter to boot, no first chunk paying
Arrow's set-up). What each of these saves is measured in BENCHMARKS.md ("Dask executor"). At most
:attr:`DaskExecutor.max_in_flight` chunks are out at once (two per worker thread), so the scheduler
never holds more than that.

Retries: a worker that dies mid-task (killed, OOM, its machine gone) is the scheduler's business: it
reschedules the worker's tasks on the others, and only the first result of a task ever reaches us, so
nothing is counted twice. A task that has seen ``allowed-failures`` workers die under it fails with
``KilledWorker`` (our ``LocalCluster`` sets that to ``parse.max_retries``; a cluster of your own keeps
its ``distributed.scheduler.allowed-failures``), which fails the run naming the chunk. An exception
raised by the parse itself (a transform's bug) is not retried: it would fail again.

Errors: every network step names the address and is bounded. An unreachable scheduler is a
:class:`StageError` after :data:`~pipeline.executors.dask_cluster.CONNECT_TIMEOUT_S`; so is an address
that accepts the connection but does not answer distributed's handshake (distributed's own ``connect``
waits for that answer forever) or answers something else (an HTTP server's reply read as a frame length
asked for exabytes): the handshake is tried first, under a deadline, before the client is made. A
scheduler without workers fails after :data:`~pipeline.executors.dask_cluster.WORKERS_TIMEOUT_S`, the
workers' check after the connect timeout. Setting the cluster up and closing it is
:mod:`pipeline.executors.dask_cluster`'s; this module submits the chunks. A chunk not
back after ``parse.chunk_timeout_s`` from its submission fails the run and its task is cancelled (a
worker's thread cannot be stopped: a transform that never returns keeps it until the worker restarts).

Remote inputs (``s3://``, ``https://``): so that their bytes need not travel through this process,
which would cap a cluster at this machine's network bandwidth, an uncompressed remote object of a run
that is not incremental is read by byte ranges (:mod:`pipeline.inputs.ranges`): the read stage only plans
ranges of ``read.chunk_bytes`` by the object's listed size, each task (a ``RangeChunk``, no bytes
inside) reads its own range on the worker and aligns it to lines, and the collect thread numbers the
ranges' lines in file order. Compressed objects stay on the driver (they cannot be cut that way).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import threading
import time
import uuid
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import wait as wait_all
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
from distributed import KilledWorker, get_worker

from pipeline import defaults
from pipeline.errors import StageError
from pipeline.executors.base import Executor, chunk_error, timeout_error
from pipeline.executors.dask_cluster import DaskCluster
from pipeline.inputs.ranges import RangeChunk, parse_range
from pipeline.runtime import keep_heap
from pipeline.stages.parse import ParseResult, ParseTask, parse_data

log = logging.getLogger(__name__)

U8 = np.ndarray[Any, np.dtype[np.uint8]]


def _parse_on_worker(task: ParseTask, data: U8) -> tuple[ParseResult, list[U8]]:
    """What a Dask worker runs for a chunk: :func:`parse_data` over the chunk's bytes (``data``, which
    came beside the emptied ``task``), its result named after the worker and its start time made a
    wall-clock time (``perf_counter`` is one clock per machine, not per cluster). Top-level, so it is
    pickled by reference: the workers import it from their own logpipe.

    The parts' IPC streams come back beside the result, as numpy arrays over them (the result's
    ``ipc`` emptied), for the same reason as the chunk's bytes go out that way: each is a frame of its
    own, never copied into a pickle; :meth:`DaskExecutor._done` puts them back."""
    _tune_worker()
    return _shipped(parse_data(task, data.data))  # the array's memory, not a copy


def _parse_range_on_worker(task: ParseTask) -> tuple[ParseResult, list[U8]]:
    """What a Dask worker runs for a byte range (:mod:`pipeline.inputs.ranges`): it reads its own bytes."""
    _tune_worker()
    return _shipped(parse_range(task))


def _shipped(result: ParseResult) -> tuple[ParseResult, list[U8]]:
    """``result`` named after this worker, on the wall clock, its streams as frames of their own."""
    worker = get_worker()
    name = worker.name if isinstance(worker.name, str) else worker.address
    result.worker = f"dask {name}"
    result.started += time.time() - time.perf_counter()
    streams = [np.frombuffer(part.ipc, dtype=np.uint8) for part in result.parts]
    for part in result.parts:
        part.ipc = b""
    return result, streams


_tuned = threading.Event()  # in a worker process: whether _tune_worker ran


def _tune_worker() -> None:
    """Once per worker process, the settings the local pool's workers have: glibc keeps the freed heap
    (Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, and every chunk would fault its
    pages in again: see BENCHMARKS.md, "Dask executor"), and one Arrow thread (the cluster's worker
    threads already use the cores)."""
    if not _tuned.is_set():
        keep_heap()
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
        _tuned.set()


class DaskExecutor(Executor):
    """Parses on a Dask cluster: the scheduler at ``address``, or (empty) a ``LocalCluster`` of
    ``workers`` worker processes with one thread each, started here and closed by :meth:`shutdown`.

    The cluster and its client are a :class:`DaskCluster`'s; this class owns the chunks out: it
    submits them (:meth:`submit`, in the caller's thread), settles their futures (:meth:`_done`, in
    distributed's callback thread) and fails those past ``chunk_timeout_s`` (its ``parse-watchdog``
    thread). The chunks out (``_pending``, ``_submitted``) and whether it is closed are kept under its
    lock.
    """

    def __init__(
        self,
        address: str,
        workers: int,
        max_retries: int = defaults.PARSE_MAX_RETRIES,
        chunk_timeout_s: float = defaults.CHUNK_TIMEOUT_S,
    ):
        self.address = address
        self.chunk_timeout_s = chunk_timeout_s
        self._lock = threading.Lock()
        self._closed = False
        self._cancelling = False
        self._pending: dict[str, tuple[Any, Future[ParseResult]]] = {}  # by key: Dask's future, ours
        self._submitted: dict[str, tuple[float, ParseTask]] = {}  # by key: when, what (the watchdog's)
        self._stopped = threading.Event()
        self._cluster = DaskCluster(address, workers, max_retries, _version)
        self._client: Any = self._cluster.client
        self.workers = self._cluster.workers
        self._watchdog = threading.Thread(target=self._watch, name="parse-watchdog", daemon=True)
        self._watchdog.start()

    # remote inputs are read by the workers, by byte ranges: a cluster is not capped at this
    # machine's network bandwidth (pipeline.inputs.ranges)
    reads_ranges = True

    @property
    def max_in_flight(self) -> int:
        """Two per worker thread: one parsing, one on its way (the network hides less than a pipe)."""
        return 2 * self.workers

    def reported_workers(self, configured: int) -> int:
        """A cluster has the workers it has, whatever ``parse.workers`` says."""
        return self.workers

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Send ``task`` (its chunk's bytes inside) to the cluster; the future holds its result or a
        :class:`StageError`."""
        outer: Future[ParseResult] = Future()
        if isinstance(task.chunk, RangeChunk):  # no bytes here: the worker reads its range
            return self._submit(outer, task, _parse_range_on_worker, task)
        # The bytes travel as a numpy array: pickle protocol 5 sends its memory as a frame of its own,
        # without copying it into the pickle (the cheapest way in for this process's CPU: BENCHMARKS.md,
        # "Dask executor"). bytes() first: the frame is sent after submit returns,
        # and a view's buffer may be the reader's, reused by then.
        data = task.chunk.data if isinstance(task.chunk.data, bytes) else bytes(task.chunk.data)
        frame = np.frombuffer(data, dtype=np.uint8)
        emptied = replace(task, chunk=replace(task.chunk, data=b""))
        return self._submit(outer, task, _parse_on_worker, emptied, frame)

    def _submit(
        self, outer: Future[ParseResult], task: ParseTask, fn: Any, *args: Any
    ) -> Future[ParseResult]:
        key = f"parse-{task.chunk.file_id}-{task.chunk.seq}-{uuid.uuid4().hex[:8]}"  # the dashboard's name
        with self._lock:
            if self._closed:
                refused = RuntimeError("cannot schedule new futures after shutdown")
                outer.set_exception(chunk_error(task, refused))
                return outer
            try:
                inner = self._client.submit(fn, *args, key=key, pure=False)
            except Exception as exc:  # noqa: BLE001 - e.g. the scheduler went away; through the future
                outer.set_exception(chunk_error(task, exc))
                return outer
            self._pending[key] = (inner, outer)
            self._submitted[key] = (time.monotonic(), task)
        # called in distributed's callback thread, once the task is finished, erred or cancelled
        inner.add_done_callback(lambda f: self._done(f, task, outer))
        return outer

    def _done(self, inner: Any, task: ParseTask, outer: Future[ParseResult]) -> None:
        # An exception escaping here would only be logged by distributed and leave the chunk's future
        # pending forever: every outcome goes into the future.
        try:
            if inner.status == "finished":
                result = _landed(inner.result())
                result.started -= time.time() - time.perf_counter()  # back to this process's clock
                _settle(outer, result=result)
            elif inner.status == "cancelled" and self._cancelling:
                _settle(outer, cancel=True)
            elif inner.status == "cancelled":  # not by us: the scheduler lost it (or we lost the scheduler)
                what = f"the Dask scheduler at {self.address or 'the LocalCluster'} dropped this chunk"
                lost = StageError("parse", what, file=task.chunk.path, chunk=task.chunk.line_range)
                _settle(outer, exc=lost)
            else:
                _settle(outer, exc=self._error(task, inner.exception()))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            _settle(outer, cancel=self._cancelling, exc=chunk_error(task, exc))
        finally:
            with self._lock:
                self._pending.pop(str(inner.key), None)
                self._submitted.pop(str(inner.key), None)
            inner.release()  # the cluster may forget the result now

    def _error(self, task: ParseTask, exc: BaseException | None) -> StageError:
        if isinstance(exc, KilledWorker):
            allowed = exc.allowed_failures
            return StageError(
                "parse",
                f"Dask workers died {allowed + 1} time(s) on this chunk (killed, e.g. by the OOM killer); "
                f"the scheduler gave up after distributed.scheduler.allowed-failures={allowed}",
                file=task.chunk.path,
                chunk=task.chunk.line_range,
            )
        return chunk_error(task, exc if exc is not None else RuntimeError("unknown error"))

    def _watch(self) -> None:
        """The ``parse-watchdog`` thread: fail a chunk not back ``chunk_timeout_s`` after its submission
        (it waited behind at most one other on its worker) and cancel its task."""
        period = min(1.0, self.chunk_timeout_s / 4)
        while not self._stopped.wait(period):
            now = time.monotonic()
            with self._lock:
                late = [
                    (key, task, self._pending[key])
                    for key, (since, task) in self._submitted.items()
                    if now - since > self.chunk_timeout_s and key in self._pending
                ]
                for key, _, _ in late:
                    del self._submitted[key]
            for _, task, (inner, outer) in late:
                fate = "its Dask task was cancelled (the worker thread running it cannot be stopped)"
                _settle(outer, exc=timeout_error(task, self.chunk_timeout_s, fate))
                with contextlib.suppress(Exception):  # best effort: the run fails on the error anyway
                    self._client.cancel([inner], force=True)

    def shutdown(self, cancel: bool = False) -> None:
        """Wait for the chunks out (or, with ``cancel``, cancel them), then close the client and our
        LocalCluster. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancelling = cancel
            pending = list(self._pending.values())
        if cancel:
            for _, outer in pending:
                _settle(outer, cancel=True)  # at once: the run is stopping and throws results away
            with contextlib.suppress(Exception):  # a client that lost its scheduler cannot cancel
                self._client.cancel([inner for inner, _ in pending], force=True)
        else:
            wait_all([outer for _, outer in pending])
        self._stopped.set()
        self._cluster.close()


def _landed(shipped: Any) -> ParseResult:
    """A result from :func:`_parse_on_worker` with its parts' streams back in place: the arrays'
    memory (the frames they arrived in, one per stream), not a copy."""
    if isinstance(shipped, ParseResult):  # a worker with an older logpipe (a warning at start)
        return shipped
    result, streams = shipped
    if not isinstance(result, ParseResult) or len(streams) != len(result.parts):
        raise TypeError(f"not a result of _parse_on_worker: {type(result).__name__}")
    for part, stream in zip(result.parts, streams, strict=True):
        part.ipc = stream.data  # a memoryview: from_ipc (Arrow) reads any buffer without a copy
    return result


def _version() -> str:
    """logpipe's installed version (run on the workers too, by reference: stdlib only; here, where a
    worker with another logpipe version has it too)."""
    return importlib.metadata.version("logpipe")


def _settle(
    fut: Future[ParseResult],
    result: ParseResult | None = None,
    exc: BaseException | None = None,
    cancel: bool = False,
) -> None:
    """Set ``fut``'s outcome unless it has one (a chunk cancelled by shutdown may finish after)."""
    with contextlib.suppress(InvalidStateError):
        if cancel:
            fut.cancel()
        elif exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

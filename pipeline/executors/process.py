"""The process executor: a local pool of worker processes, fed through shared memory.

Parsing is CPU work, so it runs in processes: one GIL each. The pool comes from an explicit
``forkserver`` (or ``spawn``) context, never ``fork``: forking a process that already runs reader and
writer threads can deadlock on locks those threads hold. Chunks and batches cross through the
shared-memory slots of :mod:`pipeline.executors.shm`, sized from the read settings (a chunk is at most
``read.chunk_bytes`` plus the rest of a line) and from what /dev/shm has free; a chunk that finds no
slot goes through the pipe. A worker that dies (the OOM killer) costs a restart of the pool and a retry
of its chunks, never a hang.

This module has the executor and what its workers run (:func:`_worker_init`, :func:`_run_timed`); its
parts have modules of their own: the slots' bookkeeping (``process_slots.py``), the timing of chunks
against ``parse.chunk_timeout_s`` (``process_watchdog.py``), and the pools with their restarts, the
retry of dead workers' chunks and the killing of what broken pools left (``process_pools.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from pipeline import defaults
from pipeline.errors import StageError
from pipeline.executors import forkserver
from pipeline.executors.base import Executor, chunk_error
from pipeline.executors.process_pools import PoolKeeper, pool_error
from pipeline.executors.process_slots import SlotPool
from pipeline.executors.process_watchdog import Watchdog
from pipeline.executors.shm import SharedSlot, SlotTask, parse_in_slot
from pipeline.stages.parse import ParseResult, ParseTask, parse_chunk

log = logging.getLogger(__name__)


# In a worker: "started", the table of chunks started (see _run_timed), shared with the main process.
_WORKER: dict[str, Any] = {}


def _worker_init(main_pid: int, started: Any = None, compiled: bool = False) -> None:
    # The terminal's Ctrl-C goes to the whole process group: the main process decides how to stop,
    # workers just finish their chunk. One Arrow thread each: the pool already uses every core.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if compiled:  # a no-op where the fork server loaded them; a spawned worker pays it itself
        import pipeline.formats.kernels  # noqa: F401
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    _WORKER["started"] = started
    threading.Thread(target=_exit_with, args=(main_pid,), name="watchdog", daemon=True).start()


def _run_timed(row: int, fn: Callable[[Any], ParseResult], payload: Any) -> ParseResult:
    """What a worker runs for a chunk: ``fn(payload)``, with this process's pid and the start time
    written into row ``row`` of the started table (the :class:`Watchdog`'s), so the main process can
    tell how long the chunk has been running and which process to kill (three stores into shared
    memory per chunk)."""
    table = _WORKER.get("started")
    if table is None or row < 0:
        return fn(payload)
    table[2 * row] = os.getpid()
    table[2 * row + 1] = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    try:
        return fn(payload)
    finally:
        table[2 * row + 1] = 0.0


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


_tracker_lock = threading.Lock()


def _quiet_tracker_loss() -> None:
    """Make the unlinking of the pool's semaphores quiet when multiprocessing's resource tracker has
    died (killed by hand, or by a too-eager process reaper) while the run went on.

    Each unlink tells the tracker to forget the name; with the tracker gone, multiprocessing starts a
    new one, which has never heard of the name and prints a ``KeyError`` traceback for every semaphore
    (the run itself is fine). The semaphores are unlinked all the same (before the tracker is told):
    a dead tracker is only told nothing, and one warning says so. Installed once, in the main process.
    """
    from multiprocessing import resource_tracker

    with _tracker_lock:
        original = resource_tracker.unregister
        if getattr(original, "_logpipe_quiet", False):
            return
        warned = threading.Event()

        def unregister(name: Any, rtype: str) -> None:
            tracker: Any = getattr(resource_tracker, "_resource_tracker", None)
            check = getattr(tracker, "_check_alive", None)
            if getattr(tracker, "_fd", None) is not None and callable(check) and not check():
                if not warned.is_set():
                    warned.set()
                    log.warning(
                        "parse: multiprocessing's resource tracker died during the run; the pool's "
                        "semaphores are unlinked without it"
                    )
                return
            original(name, rtype)

        unregister._logpipe_quiet = True  # type: ignore[attr-defined]
        resource_tracker.unregister = unregister


class ProcessExecutor(Executor):
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

    This class carries each chunk through the pool (:meth:`submit` in the caller's thread, :meth:`_done`
    in the pool's result thread) and settles its future (:meth:`_finish`, in whichever thread decides
    the outcome). Its parts own the rest: the slots (:class:`SlotPool`), the started table and the
    ``parse-watchdog`` thread (:class:`Watchdog`), the pools, their restarts and the ``parse-retry``
    thread (:class:`PoolKeeper`).
    """

    def __init__(
        self,
        workers: int,
        start_method: str = defaults.START_METHOD,
        max_retries: int = defaults.PARSE_MAX_RETRIES,
        slot_bytes: int = 0,
        chunk_timeout_s: float = defaults.CHUNK_TIMEOUT_S,
        compiled: bool = False,
    ):
        self.workers = workers
        self.max_retries = max_retries
        self.chunk_timeout_s = chunk_timeout_s
        # import and warm up numpy/pyarrow (and the compiled loops) once in the fork server instead of
        # in every worker
        ctx = forkserver.context(start_method, compiled)
        _quiet_tracker_loss()
        # One row per chunk that may be in flight (the dispatch keeps at most max_in_flight; the rest
        # is room for callers that submit more): a worker writes its pid and start time there.
        self._watchdog = Watchdog(ctx, 2 * self.max_in_flight, chunk_timeout_s, self._timed_out)
        self._slots = SlotPool(2 * workers, slot_bytes)
        try:
            self._pools = PoolKeeper(
                ctx,
                workers,
                _worker_init,
                (os.getpid(), self._watchdog.table, compiled),
                max_retries,
                submit=self._submit,
                finish=self._finish,
            )
        except OSError as exc:  # e.g. ENOSPC: its queues' semaphores live in /dev/shm
            self._slots.close()
            raise pool_error("cannot start the worker pool", exc) from exc
        self._watchdog.start()

    @property
    def max_in_flight(self) -> int:
        """Two per worker (one parsing, one waiting in its slot): as many as there are slots."""
        return 2 * self.workers

    @property
    def restarts(self) -> int:
        """How many times a pool was replaced after a worker died."""
        return self._pools.restarts

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Send ``task`` to a worker."""
        outer: Future[ParseResult] = Future()
        if self._pools.closing:  # the slots are unlinked: refused through the future, as the others do
            outer.set_exception(chunk_error(task, RuntimeError("cannot schedule new futures after shutdown")))
            return outer
        loaded = self._slots.load(task)
        if loaded is not None:  # the bytes are in the slot: the attempt keeps only the descriptor
            slot, slot_task = loaded
            attempt = Attempt(slot_task.task, parse_in_slot, slot_task, outer, slot, 0, 0)
        else:
            if not isinstance(task.chunk.data, bytes):  # the pipe pickles; views do not
                task = replace(task, chunk=replace(task.chunk, data=bytes(task.chunk.data)))
            attempt = Attempt(task, parse_chunk, task, outer, None, 0, 0)
        self._watchdog.watch(attempt)
        self._submit(attempt)
        return outer

    def _submit(self, attempt: Attempt) -> None:
        """Submit ``attempt`` to the pool of the moment (from :meth:`submit`, or ``parse-retry``)."""
        pool = self._pools.assign(attempt)
        if attempt.row >= 0:  # a retry: the dead worker's start time is not this attempt's
            self._watchdog.not_started(attempt.row)
        try:
            inner = pool.submit(_run_timed, attempt.row, attempt.fn, attempt.payload)
        except BrokenProcessPool:
            self._pools.retry_later(attempt)
            return
        except RuntimeError as exc:  # submitted after shutdown
            self._finish(attempt, exc=chunk_error(attempt.task, exc))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. OSError starting a worker; through the future
            self._finish(attempt, exc=pool_error("cannot start a worker process", exc, attempt.task))
            return
        inner.add_done_callback(lambda f: self._done(f, attempt))

    def _done(self, inner: Future[ParseResult], attempt: Attempt) -> None:
        # Runs in the pool's own thread, which would only log an exception raised here and leave
        # the chunk's future pending forever: every exception goes into the future.
        try:
            if attempt.outer.done():  # timed out: the watchdog failed it and killed its worker
                self._finish(attempt)
                return
            if inner.cancelled():
                self._finish(attempt, cancel=True)
                return
            exc = inner.exception()
            if exc is None:
                result = inner.result()
                self._finish(attempt, result=attempt.slot.unload(result) if attempt.slot else result)
            elif isinstance(exc, BrokenProcessPool):
                attempt.death = self._death(attempt)
                self._pools.retry_later(attempt)
            else:
                self._finish(attempt, exc=chunk_error(attempt.task, exc))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            self._finish(attempt, exc=chunk_error(attempt.task, exc))

    def _timed_out(self, attempt: Attempt, exc: StageError) -> None:
        """The watchdog's verdict on a chunk past ``chunk_timeout_s`` (it killed the chunk's worker)."""
        self._finish(attempt, exc=exc)

    def _finish(
        self,
        attempt: Attempt,
        result: ParseResult | None = None,
        exc: BaseException | None = None,
        cancel: bool = False,
    ) -> None:
        # the slot is free again before anyone waiting on the future can submit more
        if attempt.slot is not None:
            self._slots.give(attempt.slot)
            attempt.slot = None
        if attempt.row >= 0:
            self._watchdog.release(attempt)
        # already settled (an error path after the outcome was set): the first outcome stands
        with contextlib.suppress(InvalidStateError):
            if cancel:
                attempt.outer.cancel()
            elif exc is not None:
                attempt.outer.set_exception(exc)
            else:
                attempt.outer.set_result(result)  # type: ignore[arg-type]

    def _death(self, attempt: Attempt) -> str:
        """How the worker that had ``attempt`` ended, from its exit status: only a SIGKILL suggests
        the OOM killer; a worker that exits on its own (a transform calling ``os._exit``) says so."""
        if attempt.row < 0:  # not watched: nothing known of its worker
            return "a worker process died"
        pid, start = self._watchdog.worker(attempt.row)
        if start <= 0:
            return "the pool broke (another worker died) before this chunk started"
        processes: dict[int, Any] = getattr(attempt.pool, "_processes", None) or {}
        proc = processes.get(pid)
        code: int | None = None
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile
            code = proc.exitcode if proc is not None else None
        if code is None:  # still being stopped: terminated with its pool when another worker died
            return f"its worker {pid} was stopped with its pool (another worker died)"
        return describe_exit(pid, code)

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the pool and free the slots. Safe to call twice.

        Without ``cancel`` it waits for the chunks being parsed. With it (a run that is being stopped
        throws its results away) the workers are terminated at once instead: a worker in the middle of
        a big chunk, or several queued behind it, kept a stopped run alive for up to a second or more.
        Whatever worker any of its pools left is killed: nothing may outlive the executor.
        """
        self._pools.stop(cancel)
        self._watchdog.stop()
        self._pools.join()
        self._slots.close()


def describe_exit(pid: int, code: int) -> str:
    """A worker's end, from its exit code (negative: the signal that killed it)."""
    if code == -signal.SIGKILL:
        return f"worker {pid} was killed by SIGKILL (e.g. by the OOM killer)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker {pid} was killed by {name}"
    return f"worker {pid} exited with code {code} (a transform or a library ended the process)"


@dataclass
class Attempt:
    """One chunk on its way through the pool: what the worker runs, its future, its slot, how often it
    was retried."""

    task: ParseTask  # for the errors' file and lines (its data emptied when the bytes are in the slot)
    fn: Callable[[Any], ParseResult]  # parse_chunk, or parse_in_slot for a chunk in a slot
    payload: ParseTask | SlotTask
    outer: Future[ParseResult]
    slot: SharedSlot | None
    number: int  # retries so far
    generation: int  # the pool generation it was last submitted to
    row: int = -1  # its row in the watchdog's started table; -1: none (not watched)
    pool: ProcessPoolExecutor | None = None  # the pool it was last submitted to
    death: str = field(default="a worker process died")  # how the worker that last had it ended

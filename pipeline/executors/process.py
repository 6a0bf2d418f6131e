"""The process executor: a local pool of worker processes, fed through shared memory.

Parsing is CPU work, so it runs in processes: one GIL each. The pool comes from an explicit
``forkserver`` (or ``spawn``) context, never ``fork``: forking a process that already runs reader and
writer threads can deadlock on locks those threads hold. Chunks and batches cross through the
shared-memory slots of :mod:`pipeline.executors.shm`, sized from the read settings (a chunk is at most
``read.chunk_bytes`` plus the rest of a line) and from what /dev/shm has free; a chunk that finds no
slot goes through the pipe. A worker that dies (the OOM killer) costs a restart of the pool and a retry
of its chunks, never a hang.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import select
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait as wait_sentinels
from typing import Any

import pyarrow as pa

from pipeline.errors import StageError
from pipeline.executors import forkserver
from pipeline.executors.base import Executor, chunk_error, timeout_error
from pipeline.executors.shm import (
    SHM_BIGGER,
    SHM_DIR,
    SHM_SHARE,
    SharedSlot,
    SlotTask,
    mib,
    parse_in_slot,
    shm_free_bytes,
)
from pipeline.stages.parse import ParseResult, ParseTask, parse_chunk

log = logging.getLogger(__name__)


# How long a stopping pool's workers get to exit on SIGTERM before they are SIGKILLed: a worker that
# is stopped (SIGSTOP), or stuck in C code that ignores signals, would otherwise keep the run alive.
KILL_AFTER_S = 0.5

# In a worker: "started", the table of chunks started (see _run_timed), shared with the main process.
_WORKER: dict[str, Any] = {}


def _worker_init(main_pid: int, started: Any = None) -> None:
    # The terminal's Ctrl-C goes to the whole process group: the main process decides how to stop,
    # workers just finish their chunk. One Arrow thread each: the pool already uses every core.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    _WORKER["started"] = started
    threading.Thread(target=_exit_with, args=(main_pid,), name="watchdog", daemon=True).start()


def _run_timed(row: int, fn: Callable[[Any], ParseResult], payload: Any) -> ParseResult:
    """What a worker runs for a chunk: ``fn(payload)``, with this process's pid and the start time
    written into row ``row`` of the started table, so the main process can tell how long the chunk
    has been running and which process to kill (three stores into shared memory per chunk)."""
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


def _pool_error(what: str, exc: BaseException, task: ParseTask | None = None) -> StageError:
    """A :class:`StageError` for the pool itself failing (not a chunk's data): what was being done,
    the cause, and for ENOSPC where to look (the pool's semaphores live in /dev/shm)."""
    hint = ""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        hint = f" ({SHM_DIR} is full, and the pool's semaphores live there: {SHM_BIGGER})"
    chunk = task.chunk if task is not None else None
    err = StageError(
        "parse",
        f"{what}: {type(exc).__name__}: {exc}{hint}",
        file=chunk.path if chunk is not None else None,
        chunk=chunk.line_range if chunk is not None else None,
    )
    err.__cause__ = exc
    return err


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
    """

    def __init__(
        self,
        workers: int,
        start_method: str = "forkserver",
        max_retries: int = 2,
        slot_bytes: int = 0,
        chunk_timeout_s: float = 300.0,
    ):
        self.workers = workers
        self.max_retries = max_retries
        self.chunk_timeout_s = chunk_timeout_s
        self.restarts = 0
        # import and warm up numpy/pyarrow once in the fork server instead of in every worker
        self._ctx = forkserver.context(start_method)
        _quiet_tracker_loss()
        self._lock = threading.Lock()
        self._closing = False
        self._closed = threading.Event()
        self._generation = 0
        # every pool's process table (the pool's own dict, which a late spawn still enters): a pool that
        # breaks while a chunk is being submitted can start a worker after it terminated the others,
        # then wait for it forever; such a worker is killed here (see _restart and shutdown)
        self._tables: list[dict[int, Any]] = []
        # One row per chunk that may be in flight (the dispatch keeps at most max_in_flight; the rest
        # is room for callers that submit more): a worker writes its pid and start time there.
        rows = 2 * self.max_in_flight
        self._started: Any = self._ctx.RawArray("d", 2 * rows)
        self._rows: queue.SimpleQueue[int] = queue.SimpleQueue()
        for row in range(rows):
            self._rows.put(row)
        self._running: dict[int, _Attempt] = {}  # by row: the attempts the watchdog looks after
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
        self._watchdog = threading.Thread(target=self._watch, name="parse-watchdog", daemon=True)
        self._watchdog.start()

    @property
    def max_in_flight(self) -> int:
        """Two per worker (one parsing, one waiting in its slot): as many as there are slots."""
        return 2 * self.workers

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
            mib(free),
            room,
            mib(each),
            share,
            then,
            SHM_BIGGER,
        )

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.workers,
            mp_context=self._ctx,
            initializer=_worker_init,
            initargs=(os.getpid(), self._started),
        )
        table = getattr(pool, "_processes", None)  # the pool's own dict (empty now, so not `or {}`)
        self._tables.append(table if table is not None else {})
        return pool

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Send ``task`` to a worker."""
        outer: Future[ParseResult] = Future()
        if self._closing:  # the slots are unlinked: refused through the future, as the other executors do
            outer.set_exception(chunk_error(task, RuntimeError("cannot schedule new futures after shutdown")))
            return outer
        slot: SharedSlot | None = None
        with contextlib.suppress(queue.Empty):
            slot = self._free.get_nowait()
        loaded = slot.load(task) if slot is not None else None
        if loaded is None and slot is not None:
            self._free.put(slot)
            slot = None
        if loaded is not None:  # the bytes are in the slot: the attempt keeps only the descriptor
            attempt = _Attempt(loaded.task, parse_in_slot, loaded, outer, slot, 0, 0)
        else:
            if not isinstance(task.chunk.data, bytes):  # the pipe pickles; views do not
                task = replace(task, chunk=replace(task.chunk, data=bytes(task.chunk.data)))
            attempt = _Attempt(task, parse_chunk, task, outer, None, 0, 0)
        with contextlib.suppress(queue.Empty):  # none free: more submitted than max_in_flight allows
            attempt.row = self._rows.get_nowait()
            with self._lock:
                self._running[attempt.row] = attempt
        self._submit(attempt)
        return outer

    def _submit(self, attempt: _Attempt) -> None:
        with self._lock:
            pool = self._pool
            attempt.generation = self._generation
            attempt.pool = pool
        if attempt.row >= 0:  # a retry: the dead worker's start time is not this attempt's
            self._started[2 * attempt.row + 1] = 0.0
        try:
            inner = pool.submit(_run_timed, attempt.row, attempt.fn, attempt.payload)
        except BrokenProcessPool:
            self._retry_later(attempt)
            return
        except RuntimeError as exc:  # submitted after shutdown
            self._finish(attempt, exc=chunk_error(attempt.task, exc))
            return
        except Exception as exc:  # noqa: BLE001 - e.g. OSError starting a worker; through the future
            self._finish(attempt, exc=_pool_error("cannot start a worker process", exc, attempt.task))
            return
        inner.add_done_callback(lambda f: self._done(f, attempt))

    def _done(self, inner: Future[ParseResult], attempt: _Attempt) -> None:
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
                self._retry_later(attempt)
            else:
                self._finish(attempt, exc=chunk_error(attempt.task, exc))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            self._finish(attempt, exc=chunk_error(attempt.task, exc))

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
        if attempt.row >= 0:
            with self._lock:
                self._running.pop(attempt.row, None)
            self._started[2 * attempt.row + 1] = 0.0
            self._rows.put(attempt.row)
            attempt.row = -1
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
        broken; the run then stops with that error.
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
                f"a worker process died {attempt.number + 1} time(s) on this chunk (the last time: "
                f"{attempt.death}); giving up after parse.max_retries={self.max_retries}",
                file=chunk.path,
                chunk=chunk.line_range,
            )
            self._finish(attempt, exc=err)
            return
        self._restart(attempt.generation)
        attempt.number += 1
        log.warning(
            "parse: %s; retrying %s %s (retry %d of %d)",
            attempt.death,
            chunk.path,
            chunk.line_range,
            attempt.number,
            self.max_retries,
        )
        self._submit(attempt)

    def _death(self, attempt: _Attempt) -> str:
        """How the worker that had ``attempt`` ended, from its exit status: only a SIGKILL suggests
        the OOM killer; a worker that exits on its own (a transform calling ``os._exit``) says so."""
        if attempt.row < 0:  # not watched: nothing known of its worker
            return "a worker process died"
        if self._started[2 * attempt.row + 1] <= 0:
            return "the pool broke (another worker died) before this chunk started"
        pid = int(self._started[2 * attempt.row])
        processes: dict[int, Any] = getattr(attempt.pool, "_processes", None) or {}
        proc = processes.get(pid)
        code: int | None = None
        with contextlib.suppress(OSError, ValueError):  # closed meanwhile
            code = proc.exitcode if proc is not None else None
        if code is None:  # still being stopped: terminated with its pool when another worker died
            return f"its worker {pid} was stopped with its pool (another worker died)"
        return describe_exit(pid, code)

    def _watch(self) -> None:
        """The ``parse-watchdog`` thread: fail a chunk that runs past ``chunk_timeout_s``, and SIGKILL
        the worker that has it (its pool then breaks; the other chunks are retried as for any dead
        worker, while the run stops on this chunk's error)."""
        period = min(1.0, self.chunk_timeout_s / 4)
        while not self._closed.wait(period):
            now = time.monotonic()
            with self._lock:
                running = list(self._running.items())
            for row, attempt in running:
                start = self._started[2 * row + 1]
                if start <= 0 or now - start <= self.chunk_timeout_s or attempt.outer.done():
                    continue
                pid = int(self._started[2 * row])
                with contextlib.suppress(OSError):  # already gone
                    os.kill(pid, signal.SIGKILL)
                fate = f"its worker process (pid {pid}) was killed"
                self._finish(attempt, exc=timeout_error(attempt.task, self.chunk_timeout_s, fate))

    def _restart(self, broken_generation: int) -> None:
        with self._lock:
            if self._generation != broken_generation or self._closing:
                return  # another retry already replaced this pool
            old, old_table = self._pool, self._tables[-1]
            self._pool = self._new_pool()
            self._generation += 1
            self.restarts += 1
        old.shutdown(wait=False, cancel_futures=True)
        # the broken pool terminates its workers; one it started as it broke is left to this timer
        reaper = threading.Timer(2 * KILL_AFTER_S, _kill_all, args=(old_table,))
        reaper.daemon = True
        reaper.start()

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
            _stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=cancel)
        for table in self._tables:  # every pool it had, the broken ones too: nothing may outlive us
            _kill_all(table)
        self._closed.set()
        self._retry_thread.join(timeout=10)
        self._watchdog.join(timeout=10)
        self._close_slots()

    def _close_slots(self) -> None:
        for slot in self._slots:
            slot.close()
        self._slots = []


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


def _stop_workers(pool: ProcessPoolExecutor, kill_after_s: float = KILL_AFTER_S) -> None:
    """SIGTERM every worker of ``pool``, and SIGKILL those still there after ``kill_after_s``: a
    stopped (SIGSTOP) worker, or one stuck in C code, must not keep a stopping run alive (the pool's
    shutdown joins them). The processes are only reachable through the pool's private
    ``_processes`` (Python 3.14 has ``terminate_workers()`` and ``kill_workers()``). Their chunks'
    futures then fail with :class:`BrokenProcessPool`, which a closing executor does not retry."""
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    procs = list(processes.values())
    for proc in procs:
        with contextlib.suppress(OSError, ValueError):  # already gone, or closed
            proc.terminate()
    deadline = time.monotonic() + kill_after_s
    alive = procs
    while alive and (left := deadline - time.monotonic()) > 0:
        with contextlib.suppress(OSError, ValueError):
            wait_sentinels([p.sentinel for p in alive], timeout=left)
        alive = [p for p in alive if _alive(p)]
    for proc in alive:
        log.warning(
            "parse: worker %d did not stop on SIGTERM within %.1f s: killing it", proc.pid, kill_after_s
        )
        with contextlib.suppress(OSError, ValueError):
            proc.kill()


def _kill_all(table: dict[int, Any]) -> None:
    """SIGKILL every process of a pool's table still alive (the pool broke: their chunks are retried)."""
    for proc in list(table.values()):
        if _alive(proc):
            log.debug("parse: killing worker %d, left by a pool that broke", proc.pid)
            with contextlib.suppress(OSError, ValueError):
                proc.kill()


def _alive(proc: Any) -> bool:
    try:
        return bool(proc.is_alive())
    except (OSError, ValueError):  # closed
        return False


@dataclass
class _Attempt:
    """One chunk on its way through the pool: what the worker runs, its future, its slot, how often it
    was retried."""

    task: ParseTask  # for the errors' file and lines (its data emptied when the bytes are in the slot)
    fn: Callable[[Any], ParseResult]  # parse_chunk, or parse_in_slot for a chunk in a slot
    payload: ParseTask | SlotTask
    outer: Future[ParseResult]
    slot: SharedSlot | None
    number: int  # retries so far
    generation: int  # the pool generation it was last submitted to
    row: int = -1  # its row in the started table; -1: none (not watched)
    pool: ProcessPoolExecutor | None = None  # the pool it was last submitted to
    death: str = field(default="a worker process died")  # how the worker that last had it ended

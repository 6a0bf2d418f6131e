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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import forkserver
from pipeline.errors import StageError
from pipeline.executors.base import chunk_error
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
from pipeline.parse import ParseResult, ParseTask, parse_chunk

if TYPE_CHECKING:
    from pipeline.config import ParseSection, ReadSection

log = logging.getLogger(__name__)


def slot_bytes_for(chunk_bytes: int, max_line_bytes: int) -> int:
    """The largest chunk the reader cuts: ``read.chunk_bytes`` plus the rest of a line
    (``read.max_line_bytes``), plus its newline."""
    return chunk_bytes + max_line_bytes + 1


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

    @classmethod
    def from_settings(cls, parse: ParseSection, read: ReadSection) -> ProcessExecutor:
        """The pool for ``[parse]``, with slots that hold the largest chunk ``[read]`` cuts."""
        workers = parse.workers
        if not isinstance(workers, int):
            raise ValueError("parse.workers is not resolved yet")
        slot_bytes = slot_bytes_for(read.chunk_bytes, read.max_line_bytes)
        return cls(workers, parse.start_method, parse.max_retries, slot_bytes)

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
        return ProcessPoolExecutor(
            self.workers, mp_context=self._ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )

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
            self._submit(_Attempt(loaded.task, parse_in_slot, loaded, outer, slot, 0, 0))
            return outer
        if not isinstance(task.chunk.data, bytes):  # the pipe pickles; views do not
            task = replace(task, chunk=replace(task.chunk, data=bytes(task.chunk.data)))
        self._submit(_Attempt(task, parse_chunk, task, outer, None, 0, 0))
        return outer

    def _submit(self, attempt: _Attempt) -> None:
        with self._lock:
            pool = self._pool
            attempt.generation = self._generation
        try:
            inner = pool.submit(attempt.fn, attempt.payload)
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
    """One chunk on its way through the pool: what the worker runs, its future, its slot, how often it
    was retried."""

    task: ParseTask  # for the errors' file and lines (its data emptied when the bytes are in the slot)
    fn: Callable[[Any], ParseResult]  # parse_chunk, or parse_in_slot for a chunk in a slot
    payload: ParseTask | SlotTask
    outer: Future[ParseResult]
    slot: SharedSlot | None
    number: int  # retries so far
    generation: int  # the pool generation it was last submitted to

"""The process pool's pools: the one of the moment, its restarts when a worker dies, the retry of that
worker's chunks, and the workers of every pool it had, stopped at shutdown.

Used by :class:`pipeline.executors.process.ProcessExecutor`, which owns one :class:`PoolKeeper`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.connection import wait as wait_sentinels
from typing import TYPE_CHECKING, Any

from pipeline.errors import StageError
from pipeline.executors.shm import SHM_BIGGER, SHM_DIR
from pipeline.stages.parse import ParseTask

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from pipeline.executors.process import Attempt

# The executor's logger: these are its messages.
log = logging.getLogger("pipeline.executors.process")

# How long a stopping pool's workers get to exit on SIGTERM before they are SIGKILLed: a worker that
# is stopped (SIGSTOP), or stuck in C code that ignores signals, would otherwise keep the run alive.
KILL_AFTER_S = 0.5


class PoolKeeper:
    """The pool of the moment, replaced when a worker dies, and the ``parse-retry`` thread that
    resubmits the dead worker's chunks to the new one.

    ``ProcessPoolExecutor`` fails every pending future with ``BrokenProcessPool`` when a worker dies;
    such a chunk comes here (:meth:`retry_later`, from the pool's result thread or from the thread
    that submitted it), and the ``parse-retry`` thread starts a fresh pool (once per broken one: the
    ``generation`` tells) and resubmits the chunk through ``submit``, each at most ``max_retries``
    times, after which it fails through ``finish`` with a :class:`StageError` naming its file and
    lines. Retries are never resubmitted from the dying pool's callback.

    Under its lock, shared by the thread that submits chunks (:meth:`assign`), ``parse-retry`` and the
    thread that shuts down (:meth:`stop`): the pool, its generation, and whether it is closing. It
    keeps every pool's process table (the pool's own dict, which a late spawn still enters): a pool
    that breaks while a chunk is being submitted can start a worker after it terminated the others,
    and then wait for it forever; such a worker is killed by a timer after the restart and again at
    :meth:`stop`, since one left alive makes the interpreter's exit hang.
    """

    def __init__(
        self,
        ctx: BaseContext,
        workers: int,
        initializer: Callable[..., None],
        initargs: tuple[Any, ...],
        max_retries: int,
        submit: Callable[[Attempt], None],
        finish: Callable[..., None],
    ):
        self.workers = workers
        self.max_retries = max_retries
        self.restarts = 0
        self._ctx = ctx
        self._initializer = initializer
        self._initargs = initargs
        self._submit = submit
        self._finish = finish
        self._lock = threading.Lock()
        self.closing = False
        self._generation = 0
        self.tables: list[dict[int, Any]] = []  # every pool's process table, the broken ones too
        self.pool = self._new_pool()  # OSError, e.g. ENOSPC: its queues' semaphores live in /dev/shm
        self._retries: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._retry_loop, name="parse-retry", daemon=True)
        self.thread.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            self.workers, mp_context=self._ctx, initializer=self._initializer, initargs=self._initargs
        )
        table = getattr(pool, "_processes", None)  # the pool's own dict (empty now, so not `or {}`)
        self.tables.append(table if table is not None else {})
        return pool

    def assign(self, attempt: Attempt) -> ProcessPoolExecutor:
        """The pool to submit ``attempt`` to, noted in it with its generation."""
        with self._lock:
            pool = self.pool
            attempt.generation = self._generation
            attempt.pool = pool
        return pool

    def retry_later(self, attempt: Attempt) -> None:
        """Hand a chunk whose worker died to the retry thread; cancel it if the pools are closing.

        Checked under the lock that :meth:`stop` takes to set ``closing``: a retry queued after the
        retry thread's end marker would never be answered, and the run would wait for it forever.
        """
        with self._lock:
            if not self.closing:
                self._retries.put(attempt)
                return
        self._finish(attempt, cancel=True)

    def _retry_loop(self) -> None:
        """The ``parse-retry`` thread: resubmit the chunks of dead workers to a fresh pool.

        It must not die with chunks left waiting: an exception here (above all ENOSPC creating the
        new pool's semaphores in a full /dev/shm) fails this chunk's future with a
        :class:`StageError` naming the cause, and every later one's too, since the pool stays
        broken; the run then stops with that error.
        """
        broken: Exception | None = None
        while (attempt := self._retries.get()) is not None:
            if self.closing:
                self._finish(attempt, cancel=True)
                continue
            if broken is None:
                try:
                    self._retry(attempt)
                    continue
                except Exception as exc:  # noqa: BLE001 - handed on through the futures
                    broken = exc
            what = "a worker process died and the pool could not be restarted"
            self._finish(attempt, exc=pool_error(what, broken, attempt.task))

    def _retry(self, attempt: Attempt) -> None:
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

    def _restart(self, broken_generation: int) -> None:
        with self._lock:
            if self._generation != broken_generation or self.closing:
                return  # another retry already replaced this pool
            old, old_table = self.pool, self.tables[-1]
            self.pool = self._new_pool()
            self._generation += 1
            self.restarts += 1
        old.shutdown(wait=False, cancel_futures=True)
        # the broken pool terminates its workers; one it started as it broke is left to this timer
        reaper = threading.Timer(2 * KILL_AFTER_S, kill_all, args=(old_table,))
        reaper.daemon = True
        reaper.start()

    def stop(self, cancel: bool) -> None:
        """Stop the pool (waiting for its chunks; with ``cancel``, terminating its workers at once),
        kill what any pool it had left alive, and end the retry thread. Safe to call twice."""
        with self._lock:
            self.closing = True
            pool = self.pool
        self._retries.put(None)
        if cancel:
            stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=cancel)
        for table in self.tables:  # every pool it had, the broken ones too: nothing may outlive us
            kill_all(table)

    def join(self) -> None:
        """Wait (a little) for the retry thread, once :meth:`stop` has told it to end."""
        self.thread.join(timeout=10)


def pool_error(what: str, exc: BaseException, task: ParseTask | None = None) -> StageError:
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


def stop_workers(pool: ProcessPoolExecutor, kill_after_s: float = KILL_AFTER_S) -> None:
    """SIGTERM every worker of ``pool``, and SIGKILL those still there after ``kill_after_s``: a
    stopped (SIGSTOP) worker, or one stuck in C code, must not keep a stopping run alive (the pool's
    shutdown joins them). The processes are only reachable through the pool's private
    ``_processes`` (Python 3.14 has ``terminate_workers()`` and ``kill_workers()``). Their chunks'
    futures then fail with ``BrokenProcessPool``, which a closing executor does not retry."""
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


def kill_all(table: dict[int, Any]) -> None:
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

"""The process pool's watchdog: which worker has which chunk since when, and ``parse.chunk_timeout_s``.

Used by :class:`pipeline.executors.process.ProcessExecutor`, which owns one.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.errors import StageError
from pipeline.executors.base import timeout_error

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from pipeline.executors.process import Attempt


class Watchdog:
    """The started table, the rows of it that chunks hold, and the ``parse-watchdog`` thread.

    The table is shared memory with two numbers per row: the pid of the worker that runs the row's
    chunk, and when it started (``time.monotonic()``, one clock for every process of the machine; 0:
    not running). Workers write them (:func:`pipeline.executors.process._run_timed`, which the pool's
    initializer hands the table); the main process reads them to time chunks out and to tell how a
    dead worker ended. A chunk gets a row when it is submitted (:meth:`watch`, in the submitting
    thread) and gives it back when its future is settled (:meth:`release`, in the thread that settles
    it); a chunk that finds no free row (more submitted than ``max_in_flight``) is not watched. The
    ``parse-watchdog`` thread reads the running chunks under this object's lock and fails, through
    ``on_timeout``, one that runs past ``timeout_s``, after SIGKILLing its worker (its pool then
    breaks; the other chunks are retried as for any dead worker, while the run stops on this chunk's
    error). :meth:`stop`, from the thread that shuts the executor down, ends it.
    """

    def __init__(
        self,
        ctx: BaseContext,
        rows: int,
        timeout_s: float,
        on_timeout: Callable[[Attempt, StageError], None],
    ):
        self.timeout_s = timeout_s
        self.table: Any = ctx.RawArray("d", 2 * rows)
        self._on_timeout = on_timeout
        self._rows: queue.SimpleQueue[int] = queue.SimpleQueue()
        for row in range(rows):
            self._rows.put(row)
        self._lock = threading.Lock()
        self._running: dict[int, Attempt] = {}  # by row: the attempts the watchdog looks after
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="parse-watchdog", daemon=True)

    def start(self) -> None:
        """Start the ``parse-watchdog`` thread."""
        self._thread.start()

    def watch(self, attempt: Attempt) -> None:
        """Give ``attempt`` a free row (``attempt.row``), if there is one: it is timed from then on."""
        with contextlib.suppress(queue.Empty):  # none free: more submitted than max_in_flight allows
            attempt.row = self._rows.get_nowait()
            with self._lock:
                self._running[attempt.row] = attempt

    def not_started(self, row: int) -> None:
        """Row ``row``'s chunk is not running (yet, or again: a retry after its worker died)."""
        self.table[2 * row + 1] = 0.0

    def worker(self, row: int) -> tuple[int, float]:
        """The pid of the worker that last ran row ``row``'s chunk, and when it started it (0: not
        running)."""
        return int(self.table[2 * row]), self.table[2 * row + 1]

    def release(self, attempt: Attempt) -> None:
        """``attempt`` is settled: its row is free again (and ``attempt.row`` -1)."""
        row = attempt.row
        with self._lock:
            self._running.pop(row, None)
        self.table[2 * row + 1] = 0.0
        self._rows.put(row)
        attempt.row = -1

    def stop(self) -> None:
        """End the ``parse-watchdog`` thread (waiting for it a little). Safe to call twice."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _watch(self) -> None:
        """The ``parse-watchdog`` thread: fail a chunk that runs past ``timeout_s``, and SIGKILL the
        worker that has it."""
        period = min(1.0, self.timeout_s / 4)
        while not self._stopped.wait(period):
            now = time.monotonic()
            with self._lock:
                running = list(self._running.items())
            for row, attempt in running:
                start = self.table[2 * row + 1]
                if start <= 0 or now - start <= self.timeout_s or attempt.outer.done():
                    continue
                pid = int(self.table[2 * row])
                with contextlib.suppress(OSError):  # already gone
                    os.kill(pid, signal.SIGKILL)
                fate = f"its worker process (pid {pid}) was killed"
                self._on_timeout(attempt, timeout_error(attempt.task, self.timeout_s, fate))

"""The thread executor: parse in a pool of threads of the main process.

The parse is numpy and Arrow called from Python: it holds the GIL for much of its time, so threads
share about one core between them. That is the point of offering it: the stage table then shows what
the GIL costs against ``process`` (docs/development.md, "How it works"). Nothing is copied or pickled.

The threads are daemons of our own rather than a ``ThreadPoolExecutor``'s: a thread cannot be killed,
and a chunk that runs past ``parse.chunk_timeout_s`` (a transform that never returns) must fail the run
without its thread then holding the process at exit (``concurrent.futures`` joins its threads there).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from concurrent.futures import Future, InvalidStateError

from pipeline import defaults
from pipeline.executors.base import Executor, chunk_error, timeout_error
from pipeline.stages.parse import ParseResult, ParseTask, parse_chunk

log = logging.getLogger(__name__)

_Work = tuple[ParseTask, "Future[ParseResult]"]


class ThreadExecutor(Executor):
    """Parses in ``workers`` threads named ``parse_<k>`` (the timeline's lanes)."""

    def __init__(self, workers: int, chunk_timeout_s: float = defaults.CHUNK_TIMEOUT_S):
        self.workers = workers
        self.chunk_timeout_s = chunk_timeout_s
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._stopped = threading.Event()
        self._running: dict[str, tuple[float, _Work]] = {}  # by thread name: since when, what
        self._stuck: set[str] = set()  # threads whose chunk timed out: never waited for again
        self._threads = [
            threading.Thread(target=self._work, name=f"parse_{k}", daemon=True) for k in range(workers)
        ]
        for t in self._threads:
            t.start()
        self._watchdog = threading.Thread(target=self._watch, name="parse-watchdog", daemon=True)
        self._watchdog.start()

    @property
    def max_in_flight(self) -> int:
        """Two per thread: one parsing, one queued behind it."""
        return 2 * self.workers

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Parse in a pool thread; the future holds the result or a :class:`StageError`."""
        outer: Future[ParseResult] = Future()
        with self._lock:
            if self._closed:
                outer.set_exception(
                    chunk_error(task, RuntimeError("cannot schedule new futures after shutdown"))
                )
                return outer
            self._queue.put((task, outer))
        return outer

    def _work(self) -> None:
        name = threading.current_thread().name
        while (work := self._queue.get()) is not None:
            task, outer = work
            if not outer.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._running[name] = (time.monotonic(), work)
            try:
                result = parse_chunk(task)
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                _settle(outer, exc=chunk_error(task, exc))
            else:
                _settle(outer, result=result)
            finally:
                with self._lock:
                    self._running.pop(name, None)

    def _watch(self) -> None:
        """Fail a chunk that runs past ``chunk_timeout_s``; its thread is left behind (a daemon)."""
        period = min(1.0, self.chunk_timeout_s / 4)
        while not self._stopped.wait(period):
            now = time.monotonic()
            with self._lock:
                late = [
                    (name, work)
                    for name, (since, work) in self._running.items()
                    if now - since > self.chunk_timeout_s and name not in self._stuck
                ]
                self._stuck.update(name for name, _ in late)
            for name, (task, outer) in late:
                fate = f"its thread {name} cannot be stopped and is left behind"
                _settle(outer, exc=timeout_error(task, self.chunk_timeout_s, fate))

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the threads, waiting for the chunks being parsed (except one that timed out); with
        ``cancel``, drop the chunks not started and fail those being parsed at once, without waiting.
        Safe to call twice."""
        with self._lock:
            first = not self._closed
            self._closed = True
        if first:
            if cancel:
                with contextlib.suppress(queue.Empty):
                    while (work := self._queue.get_nowait()) is not None:
                        work[1].cancel()
            for _ in self._threads:
                self._queue.put(None)
        if cancel:
            # A stopping run throws the results away and must not wait for a chunk that may take
            # long (or never end): the chunks being parsed are settled now, their threads left to
            # finish on their own (daemons).
            with self._lock:
                running = list(self._running.values())
            for _, (task, outer) in running:
                abandoned = RuntimeError("abandoned: the run is stopping")
                _settle(outer, exc=chunk_error(task, abandoned))
        else:
            for t in self._threads:
                while t.is_alive() and t.name not in self._stuck:
                    t.join(timeout=0.1)
        self._stopped.set()


def _settle(
    fut: Future[ParseResult], result: ParseResult | None = None, exc: BaseException | None = None
) -> None:
    """Set ``fut``'s outcome unless it has one (a chunk that timed out may still finish)."""
    with contextlib.suppress(InvalidStateError):
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

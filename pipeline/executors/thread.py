"""The thread executor: parse in a pool of threads of the main process.

The parse is numpy and Arrow called from Python: it holds the GIL for much of its time, so threads
share about one core between them. That is the point of offering it: the stage table then shows what
the GIL costs against ``process`` (README, "Configuration"). Nothing is copied or pickled.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from pipeline.executors.base import chunk_error
from pipeline.parse import ParseResult, ParseTask, parse_chunk


class ThreadExecutor:
    """Parses in ``workers`` threads named ``parse_<k>`` (the timeline's lanes)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="parse")

    @property
    def max_in_flight(self) -> int:
        """Two per thread: one parsing, one queued behind it."""
        return 2 * self.workers

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Parse in a pool thread; the future holds the result or a :class:`StageError`."""
        outer: Future[ParseResult] = Future()

        def run() -> None:
            try:
                outer.set_result(parse_chunk(task))
            except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                outer.set_exception(chunk_error(task, exc))

        try:
            inner = self._pool.submit(run)
        except RuntimeError as exc:  # submitted after shutdown
            outer.set_exception(chunk_error(task, exc))
            return outer
        # a chunk that shutdown(cancel=True) drops before it starts: its caller must hear of it too
        inner.add_done_callback(lambda f: outer.cancel() if f.cancelled() else None)
        return outer

    def shutdown(self, cancel: bool = False) -> None:
        """Stop the threads (waiting for the chunks being parsed); safe to call twice."""
        self._pool.shutdown(wait=True, cancel_futures=cancel)

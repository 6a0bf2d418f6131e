"""The parse stage's threads: the dispatch thread submits chunks to the executor, the collect thread
hands the results on to the writers through the reject guard.

At most ``executor.max_in_flight`` chunks are submitted and not yet handed on: the dispatch takes a
slot before each submit (:meth:`Dispatch._take_slot`), and the collect thread gives slots back in one
place (:meth:`Dispatch._collect`), as many as its result let move on. A byte range read by the
executor's workers keeps its slot until the ranges before it in its file are in
(:class:`pipeline.inputs.ranges.Renumber`): its lines are numbered in file order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pipeline.diagnostics.stats import StageStats
from pipeline.executors import Executor
from pipeline.inputs.ranges import RangeChunk, Renumber
from pipeline.inputs.remote import RemoteReadError
from pipeline.output.record import DETECT_LINES, RejectGuard
from pipeline.stages.flow import POLL_S, Channel, RunState, Shared, Stopped, stage_thread
from pipeline.stages.parse import ParseResult, ParseTask, from_ipc
from pipeline.stages.read import Chunk, FileRead

if TYPE_CHECKING:
    from pipeline.plan import RunPlan
    from pipeline.report.panels import Panels

log = logging.getLogger(__name__)


@dataclass
class Dispatch:
    """Feeds ``chunks`` to ``executor`` and its results, judged and counted, to ``results``."""

    executor: Executor
    plan: RunPlan
    make_task: Callable[[Chunk], ParseTask]
    chunks: Channel[Chunk]
    results: Channel[ParseResult]
    shared: Shared  # the record: a file read by byte ranges gets its read report once its last range is in
    stats: StageStats
    guard: RejectGuard
    renumber: Renumber  # byte ranges' results, put back in file order
    transform_s: dict[str, float]  # seconds in each transform, summed over the workers
    absent: dict[int, set[str]]  # JSON lines: keys no chunk of the input had a value for
    panels: Panels | None
    state: RunState = field(init=False)
    _slots: threading.Semaphore = field(init=False)
    _range_of: dict[int, tuple[int, int]] = field(
        init=False, default_factory=dict
    )  # a range's future (by id)

    def __post_init__(self) -> None:
        self.state = self.shared.state
        self._slots = threading.Semaphore(self.executor.max_in_flight)

    def run(self) -> None:
        """The dispatch thread: submit every chunk, then wait for the collect thread."""
        stats = self.stats
        done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        collector = stage_thread(self.state, "collect", self._collect, done)
        collector.start()
        submitted = 0
        try:
            while True:
                self._take_slot()
                with stats.timed("wait_in_s"):
                    chunk = self.chunks.get()
                if chunk is None:
                    break
                stats.start()
                fut = self.executor.submit(self.make_task(chunk))
                if isinstance(chunk, RangeChunk):
                    with self.state.lock:
                        self._range_of[id(fut)] = (chunk.file_id, chunk.seq)
                submitted += 1
                stats.add(items_in=1)
                fut.add_done_callback(done.put)
        finally:
            done.put((None, submitted))
            collector.join()

    def _take_slot(self) -> None:
        while not self._slots.acquire(timeout=POLL_S):
            if self.state.stop.is_set():
                raise Stopped

    def _collect(self, done: queue.SimpleQueue[Any]) -> None:
        """The collect thread: every future the dispatch submitted, as it finishes; then the end of
        the results' stream, and the executor shut down (a run without a failure)."""
        expected: int | None = None
        seen = 0
        while expected is None or seen < expected:
            item = done.get()
            if isinstance(item, tuple):
                expected = item[1]
                continue
            seen += 1
            ready, freed = self._landed(item)
            for result in ready:
                self._pass_on(result)
            if freed:
                self._slots.release(freed)  # the one place slots are given back
        self.stats.finish()
        if not self.state.stop.is_set():
            self.results.close()
            # Every chunk is parsed: stop the workers now, while the writers close their files, not
            # after. The main thread's own shutdown() later finds nothing left to do.
            self.executor.shutdown()

    def _landed(self, fut: Future[ParseResult]) -> tuple[list[ParseResult], int]:
        """What a finished future lets move on (in file order), and how many slots that frees."""
        if self.state.stop.is_set():
            return [], 1
        with self.state.lock:
            where = self._range_of.pop(id(fut), None)
        try:
            result = fut.result()
        except BaseException as exc:  # noqa: BLE001 - a StageError with file and lines
            cause = exc.__cause__
            if where is None or not isinstance(cause, RemoteReadError):
                self.state.fail(exc)
                return [], 1
            # a range that could not be read: its file failed, as a read failing on the driver
            error = f"{type(cause).__name__}: {cause}"
            log.warning("read: %s: %s (lines read so far are kept)", self.plan.path(where[0]), error)
            return self._moved_on(where[0], *self.renumber.fail(*where, error))
        if where is None:
            return [result], 1
        # a byte range: held (in its slot) until the ranges before it in its file are in
        return self._moved_on(result.file_id, *self.renumber.take(result))

    def _moved_on(
        self, file_id: int, ready: list[ParseResult], dropped: int, report: FileRead | None
    ) -> tuple[list[ParseResult], int]:
        """Byte ranges: those now in file order move on; their slots and the dropped ones' are freed."""
        if report is not None:
            self.shared.record.set_read(file_id, report)
        return ready, len(ready) + dropped

    def _pass_on(self, result: ParseResult) -> None:
        """Judge, count and queue one result for the writers (its lines numbered in its file)."""
        stats = self.stats
        if self.state.stop.is_set():
            return
        try:
            self._judge(result)
        except BaseException as exc:  # noqa: BLE001 - the guard's
            self.state.fail(exc)
            return
        with self.state.lock:
            for name, seconds in result.transform_s.items():
                self.transform_s[name] = self.transform_s.get(name, 0.0) + seconds
            for f in result.files():
                if f.lines:
                    seen = self.absent.setdefault(f.file_id, set(f.absent))
                    seen &= set(f.absent)
        stats.add(
            busy_s=result.busy_s, cpu_s=result.cpu_s, items_out=1, lines=result.lines, bytes=result.in_bytes
        )
        stats.interval("busy", result.started, result.started + result.busy_s, result.worker)
        if self.panels is not None:
            self.panels.add(result.panels)
        self.shared.progress.add(lines=result.lines)
        try:
            with stats.timed("blocked_out_s"):
                self.results.put(result)
        except Stopped:
            pass

    def _judge(self, result: ParseResult) -> None:
        """Feed the reject guard, each file of the result apart; it raises when an input does not look
        like the configured format."""
        at = 0  # the file's first row in the result's rejects

        def examples(at: int, n: int) -> list[tuple[int, str, bytes]]:
            # the guard keeps no more than DETECT_LINES: never a Python object for every reject
            batch = from_ipc(result.rejects).slice(at, min(n, DETECT_LINES))
            cols = (batch.column(name).to_pylist() for name in ("line", "reason", "raw"))
            return list(zip(*cols, strict=True))

        for f in result.files():
            fmt = self.plan.formats[f.file_id].name
            self.guard.add(
                self.plan.path(f.file_id), f.lines, f.rejects, partial(examples, at, f.rejects), fmt
            )
            at += f.rejects

"""How work flows between the stages: bounded channels that honour the run's stop flag and own their
end markers, the stage threads and how the main thread waits for them, and the sampler.

Every channel is bounded, so memory is set by the config, not by the input. Any failure sets the stop
flag (:meth:`RunState.fail`): a thread blocked on a channel sees it within :data:`POLL_S` and leaves
by :class:`Stopped`, which its stage thread swallows (the failure itself is already recorded).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pipeline.diagnostics.stats import RunStats, Samples
from pipeline.errors import Interrupted

if TYPE_CHECKING:
    from pipeline.executors import Executor
    from pipeline.output.record import RunRecord
    from pipeline.report.progress import Progress
    from pipeline.stages.write import PartitionWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
POLL_S = 0.1  # how often a blocked thread looks at the stop flag
STOP_JOIN_S = 10.0  # how long a failed run waits for its stage threads, all together
# ... and one stopped by a signal: SIGTERM ends a run within about a second, even with a thread stuck in
# a transform (the inline and thread executors' chunks run in threads that nothing can stop)
SIGNAL_JOIN_S = 0.8


class Stopped(Exception):
    """Raised inside a stage thread when the run is being stopped."""


@dataclass
class RunState:
    """Shared by the stage threads of one run: the stop flag and the first failure."""

    stop: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, exc: BaseException) -> None:
        """Record ``exc`` (unless a failure came first) and stop every stage."""
        with self.lock:
            if self.failure is None:
                self.failure = exc
        self.stop.set()


@dataclass(frozen=True)
class Shared:
    """What every stage thread of a run shares: its state, its books and its progress display."""

    state: RunState
    record: RunRecord
    progress: Progress


class Channel(Generic[T]):
    """A bounded queue between two stages that gives up when the run stops, and owns its end of
    stream: :meth:`close` puts one end marker per consumer, :meth:`get` returns ``None`` for it."""

    def __init__(self, maxsize: int, state: RunState, consumers: int = 1):
        self._queue: queue.Queue[T | None] = queue.Queue(maxsize=maxsize)
        self._stop = state.stop
        self.consumers = consumers

    def put(self, item: T) -> None:
        """Queue ``item``, waiting for room; :class:`Stopped` once the run stops."""
        self._put(item)

    def close(self) -> None:
        """The end of the stream: every consumer's :meth:`get` then returns ``None``."""
        for _ in range(self.consumers):
            self._put(None)

    def _put(self, item: T | None) -> None:
        while True:
            try:
                self._queue.put(item, timeout=POLL_S)
                return
            except queue.Full:
                if self._stop.is_set():
                    raise Stopped from None

    def get(self) -> T | None:
        """The next item, or ``None`` at the end of the stream; :class:`Stopped` once the run stops."""
        while True:
            try:
                return self._queue.get(timeout=POLL_S)
            except queue.Empty:
                if self._stop.is_set():
                    raise Stopped from None

    def qsize(self) -> int:
        return self._queue.qsize()


class StageThreads:
    """The stage threads of a run: each hands its failure to :class:`RunState`; the main thread only
    waits for them, so that SIGINT and SIGTERM (delivered to it) are handled at once."""

    def __init__(self, state: RunState):
        self.state = state
        self.threads: list[StageThread] = []

    def add(self, name: str, target: Callable[..., object], *args: Any) -> None:
        self.threads.append(stage_thread(self.state, name, target, *args))

    def run(self, executor: Executor, writers: Sequence[PartitionWriter], sampler: Sampler) -> None:
        """Run every thread to its end, with ``sampler`` beside them; raise the run's first failure
        once every thread that can stop has stopped, ``executor`` is shut down and ``writers`` are
        closed (or aborted)."""
        try:
            sampler.start()
            for t in self.threads:
                t.start()
            while not all(t.ended(0) for t in self.threads):
                for t in self.threads:
                    t.ended(POLL_S)
        except BaseException as exc:
            self.state.fail(exc)
            raise
        finally:
            self._stop(executor, writers, sampler)
        if self.state.failure is not None:
            raise self.state.failure

    def _stop(self, executor: Executor, writers: Sequence[PartitionWriter], sampler: Sampler) -> None:
        """The executor shut down (a failed run's chunks not yet started cancelled, so the threads
        waiting for them can finish), the threads joined, the sampler stopped, the writers closed; a
        failed run's writers abort, but one still in a write keeps its files to itself."""
        failed = self.state.failure is not None
        if failed:
            executor.shutdown(cancel=True)
        alive = self.join()
        if not failed:
            executor.shutdown()
        sampler.stop()
        for k, w in enumerate(writers):
            if self.state.failure is None:
                w.close()
            elif f"write-{k}" not in alive:
                w.abort()

    def join(self) -> set[str]:
        """Wait for the threads (after :meth:`run`, or after it was cut short); the names of those
        still alive. A stopped run waits one bounded budget for all of them: a thread stuck in a read
        that never returns (a hung network mount) must not keep it alive; the threads are daemons and
        end with the process."""
        failed = self.state.failure is not None
        budget = SIGNAL_JOIN_S if isinstance(self.state.failure, Interrupted) else STOP_JOIN_S
        deadline = time.monotonic() + budget  # one budget for all: each stuck thread adds none
        for t in self.threads:
            if not t.ended(None if not failed else max(0.0, deadline - time.monotonic())):
                log.warning("%s thread did not stop within %.1f s; leaving it behind", t.name, budget)
        return {t.name for t in self.threads if not t.ended(0)}


class StageThread(threading.Thread):
    """A daemon thread running ``target(*args)``; what it raises fails the run (:class:`Stopped`:
    the run was stopped already).

    The main thread waits for it on :meth:`ended`, never in :meth:`threading.Thread.join`: in Python
    3.11 a signal handler that raises while ``join(timeout)`` waits (SIGTERM raising
    :class:`~pipeline.errors.Interrupted`) marks the thread stopped although it still runs, and a
    stuck thread would then be taken for ended (its writer aborted while it writes)."""

    def __init__(self, state: RunState, name: str, target: Callable[..., object], *args: Any):
        super().__init__(name=name, daemon=True)
        self._state, self._target_fn, self._args = state, target, args
        self._finished = threading.Event()

    def run(self) -> None:
        try:
            self._target_fn(*self._args)
        except Stopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread through state
            self._state.fail(exc)
        finally:
            self._finished.set()

    def ended(self, timeout: float | None) -> bool:
        """Whether the thread's work is over, waiting up to ``timeout`` seconds (None: until it is)."""
        return self._finished.wait(timeout)


def stage_thread(state: RunState, name: str, target: Callable[..., object], *args: Any) -> StageThread:
    """A :class:`StageThread` running ``target(*args)``."""
    return StageThread(state, name, target, *args)


class Sampler:
    """A thread that takes the stages' counts and the channels' depths every ``samples.period``
    seconds, for the report's charts; :meth:`stop` takes a last sample and ends it."""

    def __init__(self, samples: Samples, stats: RunStats, chunks: Channel[Any], results: Channel[Any]):
        self.samples = samples
        self.stats = stats
        self.chunks = chunks
        self.results = results
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Take the last sample, and end the machine's measurement."""
        self._done.set()
        if self._thread.ident is not None:
            self._thread.join()
        self.stats.machine.finish()

    def _loop(self) -> None:
        stats = self.stats
        while True:
            finished = self._done.wait(self.samples.period)
            values = (stats.read.lines, stats.parse.lines, stats.write.lines)
            self.samples.take(time.perf_counter(), (*values, self.chunks.qsize(), self.results.qsize()))
            if finished:
                return

"""The executor interface and the errors every backend reports alike.

An executor runs :func:`pipeline.stages.parse.parse_chunk` somewhere and hands back a
:class:`concurrent.futures.Future` per chunk: the dispatch and collect threads
(:mod:`pipeline.stages.dispatch`) are written against that alone, so a backend never changes the
stages. Futures carry the :class:`ParseResult` or a :class:`StageError` naming the chunk's file and
lines; a chunk dropped by ``shutdown(cancel=True)`` is cancelled, never left pending (the dispatch waits
for every future it was given).

What a backend can do beyond that is a capability it declares here, with a default the others keep
(:attr:`Executor.reads_ranges`, :meth:`Executor.reported_workers`): the stages ask for the capability,
never for the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import TYPE_CHECKING, ClassVar

from pipeline.errors import StageError

if TYPE_CHECKING:
    from pipeline.stages.parse import ParseResult, ParseTask


class Executor(ABC):
    """Where parse work runs."""

    workers: int  # how many chunks it parses at once (processes, threads, or a cluster's worker threads)

    # Whether its workers read a task's bytes themselves: a task may then be a byte range of a remote
    # input (pipeline.inputs.ranges) instead of a chunk's bytes, so that those bytes need not travel
    # through this process. Worth it only where the workers have a network of their own (a cluster).
    reads_ranges: ClassVar[bool] = False

    @property
    @abstractmethod
    def max_in_flight(self) -> int:
        """How many chunks the dispatch may have submitted and not yet collected: enough to keep every
        worker busy while results travel back, few enough to bound memory."""

    def reported_workers(self, configured: int) -> int:
        """The parse stage's worker count for the run's statistics: ``parse.workers`` (``configured``)
        for an executor that it sizes; one that has the workers it finds reports those."""
        return configured

    @abstractmethod
    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Start parsing ``task``; the future holds its result or a :class:`StageError`."""

    @abstractmethod
    def shutdown(self, cancel: bool = False) -> None:
        """Stop, waiting for running work; ``cancel`` drops (cancels) work that has not finished.
        Safe to call twice; a ``submit`` after it fails its future with a :class:`StageError`."""


def chunk_error(task: ParseTask, exc: BaseException) -> StageError:
    """``exc``, raised parsing ``task``, as a :class:`StageError` naming the chunk's file and lines."""
    err = StageError(
        "parse", f"{type(exc).__name__}: {exc}", file=task.chunk.path, chunk=task.chunk.line_range
    )
    err.__cause__ = exc
    return err


def timeout_error(task: ParseTask, timeout_s: float, fate: str) -> StageError:
    """A chunk that ran past ``parse.chunk_timeout_s``: its file and lines, the transforms that ran on
    it (the usual suspects: the built-in parse is bounded by the chunk's size), and ``fate``, what
    became of the worker that had it."""
    names = ", ".join(t.name for t in task.transforms) or "none"
    return StageError(
        "parse",
        f"chunk not parsed within parse.chunk_timeout_s = {timeout_s:g} s (transforms: {names}); {fate}",
        file=task.chunk.path,
        chunk=task.chunk.line_range,
    )

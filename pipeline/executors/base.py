"""The executor interface, the errors every backend reports alike, and the factory.

An executor runs :func:`pipeline.stages.parse.parse_chunk` somewhere and hands back a
:class:`concurrent.futures.Future` per chunk: the runner's dispatch and collect threads are written
against that alone, so a backend never changes the stages. Futures carry the :class:`ParseResult` or a
:class:`StageError` naming the chunk's file and lines; a chunk dropped by ``shutdown(cancel=True)`` is
cancelled, never left pending (the runner waits for every future it was given).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from pipeline.errors import StageError

if TYPE_CHECKING:  # the config's models import pydantic: kept out of the workers
    from pipeline.config import ReadSection, ResolvedParseSection
    from pipeline.stages.parse import ParseResult, ParseTask

KINDS = ("process", "thread", "inline", "dask")


class Executor(Protocol):
    """Where parse work runs."""

    @property
    def workers(self) -> int:
        """How many chunks it parses at once (processes, threads, or a cluster's worker threads)."""
        ...

    @property
    def max_in_flight(self) -> int:
        """How many chunks the runner may have submitted and not yet collected: enough to keep every
        worker busy while results travel back, few enough to bound memory."""
        ...

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Start parsing ``task``; the future holds its result or a :class:`StageError`."""
        ...

    def shutdown(self, cancel: bool = False) -> None:
        """Stop, waiting for running work; ``cancel`` drops (cancels) work that has not finished.
        Safe to call twice; a ``submit`` after it fails its future with a :class:`StageError`."""
        ...


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


def make_executor(parse: ResolvedParseSection, read: ReadSection) -> Executor:
    """The executor named by ``parse.executor``, built from the (resolved) ``[parse]`` and ``[read]``
    settings: the read settings bound the size of a chunk, which the process pool's shared memory
    needs to know. The shared memory that killed runs left behind is removed first."""
    from pipeline.executors.shm import remove_stale_blocks

    remove_stale_blocks()  # whatever the executor: a killed run's blocks go at the next run
    if parse.executor == "inline":
        from pipeline.executors.inline import InlineExecutor

        return InlineExecutor(parse.chunk_timeout_s)
    if parse.executor == "thread":
        from pipeline.executors.thread import ThreadExecutor

        return ThreadExecutor(parse.workers, parse.chunk_timeout_s)
    if parse.executor == "process":
        from pipeline.executors.process import ProcessExecutor

        return ProcessExecutor.from_settings(parse, read)
    if parse.executor == "dask":
        from pipeline.executors.dask import DaskExecutor  # imports distributed: only when chosen

        return DaskExecutor(parse.address, parse.workers, parse.max_retries, parse.chunk_timeout_s)
    raise ValueError(f"unknown parse.executor {parse.executor!r}; allowed: {', '.join(KINDS)}")

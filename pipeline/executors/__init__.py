"""Where the parse runs: one small interface (:class:`Executor`), one module per backend, and the
registry that builds them (:func:`make_executor`).

``inline`` (the calling thread: the serial reference), ``thread`` (threads of the main process),
``process`` (a local process pool fed through shared memory) and ``dask`` (a Dask cluster, or a
``LocalCluster`` of its own); their names are :data:`pipeline.executors.kinds.KINDS`. The stages only
call :func:`make_executor` and the :class:`Executor` interface; each backend module is imported when it
is chosen, so a run pays only for its own (``dask`` above all: importing distributed is slow, see
BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.executors.base import Executor
from pipeline.executors.kinds import KINDS

if TYPE_CHECKING:  # the config's models import pydantic: kept out of the workers
    from pipeline.config import ResolvedParseSection

__all__ = ["KINDS", "Executor", "make_executor"]


def _inline(parse: ResolvedParseSection, max_chunk_bytes: int, compiled: bool) -> Executor:
    from pipeline.executors.inline import InlineExecutor

    if compiled:  # this process parses: it loads the engine's compiled loops
        import pipeline.formats.kernels  # noqa: F401
    return InlineExecutor(parse.chunk_timeout_s)


def _thread(parse: ResolvedParseSection, max_chunk_bytes: int, compiled: bool) -> Executor:
    from pipeline.executors.thread import ThreadExecutor

    if compiled:
        import pipeline.formats.kernels  # noqa: F401
    return ThreadExecutor(parse.workers, parse.chunk_timeout_s)


def _process(parse: ResolvedParseSection, max_chunk_bytes: int, compiled: bool) -> Executor:
    from pipeline.executors.process import ProcessExecutor

    # its shared-memory slots hold the largest chunk the reader cuts
    return ProcessExecutor(
        parse.workers, parse.start_method, parse.max_retries, max_chunk_bytes, parse.chunk_timeout_s, compiled
    )


def _dask(parse: ResolvedParseSection, max_chunk_bytes: int, compiled: bool) -> Executor:
    from pipeline.executors.dask import DaskExecutor  # imports distributed: only when chosen

    # a cluster's workers load the compiled loops where their preload imports pipeline.formats.kernels
    return DaskExecutor(parse.address, parse.workers, parse.max_retries, parse.chunk_timeout_s)


_BUILDERS: dict[str, Callable[[ResolvedParseSection, int, bool], Executor]] = {
    "process": _process,
    "thread": _thread,
    "inline": _inline,
    "dask": _dask,
}
assert tuple(_BUILDERS) == KINDS, "every executor kind is built here"


def make_executor(parse: ResolvedParseSection, max_chunk_bytes: int, compiled: bool = False) -> Executor:
    """The executor named by ``parse.executor``, built from the resolved ``[parse]`` settings it
    uses and the size of the largest chunk it will be given
    (:func:`pipeline.stages.read.largest_chunk`); with ``compiled``, its workers load the engine's
    compiled loops (``parse.compiled``). The shared memory that killed runs left behind is removed
    first."""
    build = _BUILDERS.get(parse.executor)
    if build is None:
        raise ValueError(f"unknown parse.executor {parse.executor!r}; allowed: {', '.join(KINDS)}")
    from pipeline.executors.shm import remove_stale_blocks

    remove_stale_blocks()  # whatever the executor: a killed run's blocks go at the next run
    return build(parse, max_chunk_bytes, compiled)

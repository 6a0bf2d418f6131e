"""The inline executor: parse in the calling thread (the dispatch thread, pipeline.stages.dispatch).

The serial reference every other backend is compared with in the tests, and a debugging aid: a
breakpoint or a traceback in a transform is in the main process, with nothing pickled on the way.
"""

from __future__ import annotations

from concurrent.futures import Future

from pipeline import defaults
from pipeline.executors.base import Executor, chunk_error
from pipeline.stages.parse import ParseResult, ParseTask, parse_chunk


class InlineExecutor(Executor):
    """Runs :func:`parse_chunk` in the calling thread; ``submit`` returns a finished future."""

    workers = 1
    max_in_flight = 2  # the dispatch thread parses one while the collect thread hands on the other

    def __init__(self, chunk_timeout_s: float = defaults.CHUNK_TIMEOUT_S) -> None:
        # not enforced: the chunk runs in the caller's thread, which nothing can stop (docs/configuration.md)
        self.chunk_timeout_s = chunk_timeout_s
        self._closed = False

    def submit(self, task: ParseTask) -> Future[ParseResult]:
        """Parse now; return an already finished future."""
        fut: Future[ParseResult] = Future()
        try:
            if self._closed:  # the same refusal as the pools': a bug in the caller, not a hang
                raise RuntimeError("cannot schedule new futures after shutdown")
            fut.set_result(parse_chunk(task))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(chunk_error(task, exc))
        return fut

    def shutdown(self, cancel: bool = False) -> None:
        """Nothing runs in the background: only later submits are refused."""
        self._closed = True

"""SIGINT and SIGTERM during a run: raised as :class:`~pipeline.errors.Interrupted` in the main thread,
except inside :func:`deferred`, where they wait until the block is done.

The commit (pipeline.output.record) is a few renames that must not be split: a signal raised as an exception
between the dataset's exchange and the record's publication would leave a new dataset under the old
record. Python runs signal handlers in the main thread between bytecodes, so a handler that only notes
the signal while a :func:`deferred` block runs (the commit runs in the main thread) cannot interrupt it,
whichever thread the kernel delivered the signal to.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from pipeline.errors import Interrupted

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _Handling:
    deferring: int = 0  # nesting depth of deferred() blocks
    pending: int | None = None  # the first signal that arrived while deferring
    stopping: bool = False  # a signal was raised: later ones must not cut the cleanup short


_state = _Handling()


@dataclass
class Deferred:
    """What arrived during a :func:`deferred` block: the signal number, or None."""

    signum: int | None = None


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.deferring:
        if _state.pending is None:
            _state.pending = signum
            log.warning("signal %d during the commit: completing the commit first", signum)
        return
    if _state.stopping:
        log.warning("signal %d: already stopping, cleaning up", signum)
        return
    _state.stopping = True
    raise Interrupted(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted` in the main thread while the run lasts."""
    _state.stopping = False
    old = {s: signal.signal(s, _handler) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def deferred() -> Iterator[Deferred]:
    """Hold SIGINT and SIGTERM back while the block runs; ``.signum`` says afterwards which came.

    The caller decides what a held signal means once the block is done (the commit reports that it
    completed, then exits as interrupted). Only effective in the main thread, where handlers run.
    """
    got = Deferred()
    _state.deferring += 1
    try:
        yield got
    finally:
        _state.deferring -= 1
        if not _state.deferring:
            got.signum, _state.pending = _state.pending, None
            if got.signum is not None:
                _state.stopping = True

"""Process-level settings for a batch run: glibc's heap, Arrow's allocator, numpy's BLAS threads and
pydantic's plugin search. What each one saves is in BENCHMARKS.md ("Design figures").

- **Heap trimming.** A parse worker allocates and frees the same few dozen megabytes of numpy
  temporaries for every chunk. By default glibc hands freed memory at the top of the heap back to the
  kernel as soon as a little of it is free, so every chunk faults the same pages in again and the
  kernel zeroes them. A high trim threshold keeps them mapped; a top pad grows the heap in big steps.
  Memory stays bounded: what is kept is the high-water mark of one chunk's temporaries, which the queue
  depths and chunk size already bound (docs/operations.md, "Memory").
- **Arrow's allocator.** Arrow's default, mimalloc, keeps more resident in the main process than
  glibc's malloc with the settings above, for the same CPU time.
- **BLAS threads.** numpy starts an OpenBLAS thread per core at import; the pipeline does no linear
  algebra, but those threads spin and take CPU from the workers.
- **Releasing the main process's free heap now and then.** The main process's thread arenas (one per
  reader, writer and pool thread) keep every page they ever touched; the chunks and batches they hold
  differ in size, so the freed space turns into holes between live blocks and each arena's high-water
  mark creeps up over a long run while glibc counts far less in use. :func:`release_free_heap`, called
  by the writer at most every :data:`RELEASE_INTERVAL_S`, gives the free pages of those holes back
  (``malloc_trim``). The workers do not need it: their memory stays flat.
- **pydantic plugins.** When the first model class is built, pydantic looks for plugins among the
  entry points of every installed distribution, on the main process's way to its first chunk and
  growing with their number. The config models need no plugin.

Child processes (the fork server, spawned workers) get the same through the environment, which glibc,
Arrow and OpenBLAS read at start-up; the current process through ``mallopt`` (and the environment, as
long as numpy and pyarrow are not imported yet; pydantic reads it when it builds its first model).
Values a user set are kept.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)

TRIM_THRESHOLD = 1 << 30  # bytes
TOP_PAD = 64 << 20  # bytes
RELEASE_INTERVAL_S = 0.5  # at most one release_free_heap() per this many seconds, per process
# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2

ENVIRONMENT = {
    "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    "MALLOC_TOP_PAD_": str(TOP_PAD),
    "OPENBLAS_NUM_THREADS": "1",
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "PYDANTIC_DISABLE_PLUGINS": "__all__",
}


@cache  # once per process
def tune_process() -> None:
    """Apply the settings to this process (where glibc is the C library) and to its future children.

    Call before numpy and pyarrow are imported (OpenBLAS and Arrow read their settings then) and before
    any child starts.
    Calls after the first do nothing.
    """
    heap_set_by_user = "MALLOC_TRIM_THRESHOLD_" in os.environ  # glibc has already applied it
    for key, value in ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    if heap_set_by_user:
        return
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return
    # mallopt returns 1 on success; a failure only costs speed
    if not (mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(_M_TOP_PAD, TOP_PAD)):
        log.debug("mallopt refused the heap settings; running with glibc's defaults")


def keep_heap() -> bool:
    """Apply the heap settings to this process now, whatever its environment says; whether glibc took
    them. For processes that others start with settings of their own: a Dask worker's nanny sets
    ``MALLOC_TRIM_THRESHOLD_=65536`` (the trimming described above, which makes every chunk fault its
    pages in again on a Dask worker), which :func:`tune_process` would take for the user's choice."""
    mallopt = _libc_function("mallopt")
    return mallopt is not None and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(_M_TOP_PAD, TOP_PAD)
    )


@cache
def _libc_function(name: str) -> Callable[..., int] | None:
    """glibc's function ``name`` (``mallopt``, ``malloc_trim``), or None off Linux or with musl."""
    if sys.platform != "linux":
        return None
    function: Callable[..., int] | None = getattr(ctypes.CDLL(None), name, None)
    return function


class _Throttle:
    """Lets a call through at most once per interval, across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = time.monotonic()  # the first call passes an interval after start-up, not at once

    def ready(self, interval: float) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._last < interval:
                return False
            self._last = now
            return True


_release_throttle = _Throttle()


def release_free_heap(min_interval: float = RELEASE_INTERVAL_S) -> bool:
    """Give the heap's free pages back to the kernel (glibc's ``malloc_trim``), unless that was done
    less than ``min_interval`` seconds ago by any thread. Returns whether it ran.

    ctypes drops the GIL for the call, so other threads go on meanwhile (it walks every thread arena,
    hence the throttle). Where there is no ``malloc_trim`` (musl, macOS), does nothing.
    """
    trim = _libc_function("malloc_trim")
    if trim is None or not _release_throttle.ready(min_interval):
        return False
    trim(0)
    return True

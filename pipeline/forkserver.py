"""Start the parse workers' fork server early, so it boots while the main process is still importing.

The fork server is a fresh Python process that imports numpy and pyarrow and warms up Arrow's
compute kernels (``pipeline.warmup``) before it forks the first worker: about 0.35 s of CPU. Started
at the top of ``logpipe run``, that happens on the other core while the main process imports its own
modules and loads the config, instead of after. This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import multiprocessing

# What the fork server imports once, so every forked worker starts with it loaded and warm.
PRELOAD = ["pipeline.parse", "pipeline.warmup"]


def context(start_method: str) -> multiprocessing.context.BaseContext:
    """The multiprocessing context for ``parse.start_method``, with the preload set for forkserver."""
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_early(start_method: str) -> None:
    """Launch the fork server now (returns at once; it preloads in the background)."""
    if start_method == "forkserver":
        context(start_method)
        from multiprocessing import forkserver

        forkserver.ensure_running()

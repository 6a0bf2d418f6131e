"""Start the parse workers' fork server early, so it boots while the main process is still importing.

The fork server is a fresh Python process that imports numpy and pyarrow and warms up Arrow's
compute kernels (``pipeline.warmup``) before it forks the first worker: about 0.35 s of CPU. Started
at the top of ``logpipe run``, that happens on the other core while the main process imports its own
modules and loads the config, instead of after. This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import importlib.machinery
import multiprocessing
import sys

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


def skip_main_import() -> None:
    """Keep the fork server and workers from re-importing the ``logpipe`` script as ``__mp_main__``.

    multiprocessing re-imports the parent's main script in its children so that functions defined
    there can be unpickled. Ours defines none (the process boundary is :func:`pipeline.parse.parse_chunk`),
    and re-importing it pulls in typer and pydantic: ~0.15 s on the fork server's boot, which is on the
    critical path of every run. Naming the main module as a package's ``__main__`` is the documented way
    multiprocessing skips it.
    """
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None:
        main.__spec__ = importlib.machinery.ModuleSpec("pipeline.__main__", None)

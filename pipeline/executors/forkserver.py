"""Start the parse workers' fork server early, so it boots while the main process is still importing.

The fork server is a fresh Python process that imports numpy and pyarrow and warms up Arrow's
compute kernels (``pipeline.executors.warmup``) before it forks the first worker: about 0.35 s of CPU. Started
at the top of ``logpipe run``, that happens on the other core while the main process imports its own
modules and loads the config, instead of after. This module imports nothing heavy on purpose.
"""

from __future__ import annotations

import importlib.machinery
import multiprocessing
import sys

from pipeline import defaults
from pipeline.config_source import compiled_for, early_start, input_bytes

# What the fork server imports once, so every forked worker starts with it loaded and warm.
PRELOAD = ["pipeline.stages.parse", "pipeline.executors.process", "pipeline.executors.warmup"]
# and before its warm-up, in a run that wants them: the engine's compiled loops (parse.compiled)
KERNELS = "pipeline.formats.kernels"


def context(start_method: str, compiled: bool = False) -> multiprocessing.context.BaseContext:
    """The multiprocessing context for ``parse.start_method``, with the preload set for forkserver
    (which counts only before the server starts: :func:`start_early` may have started it)."""
    ctx = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        ctx.set_forkserver_preload([*PRELOAD[:-1], KERNELS, PRELOAD[-1]] if compiled else PRELOAD)
    return ctx


def start_early(start_method: str, compiled: bool = False) -> None:
    """Launch the fork server now (returns at once; it preloads in the background); with ``compiled``,
    it loads the engine's compiled loops for its workers."""
    if start_method == "forkserver":
        context(start_method, compiled)
        from multiprocessing import forkserver

        forkserver.ensure_running()


def skip_main_import() -> None:
    """Keep the fork server and workers from re-importing the ``logpipe`` script as ``__mp_main__``.

    multiprocessing re-imports the parent's main script in its children so that functions defined
    there can be unpickled. Ours defines none (the process boundary is
    :func:`pipeline.stages.parse.parse_chunk`),
    and re-importing it pulls in typer and pydantic: ~0.15 s on the fork server's boot, which is on the
    critical path of every run. Naming the main module as a package's ``__main__`` is the documented way
    multiprocessing skips it.
    """
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__spec__", None) is None:
        main.__spec__ = importlib.machinery.ModuleSpec("pipeline.__main__", None)


def start_for_command_line(argv: list[str]) -> bool:
    """Start the fork server before the CLI's own imports if ``argv`` is a ``run`` that will use it.

    The CLI's imports (typer, pydantic and its model classes) take ~0.15 s before the config is even
    loaded; the fork server's boot is the longest path to the first parsed chunk, so it should start
    first. A wrong guess (see :func:`wants_fork_server`) costs speed, never correctness: ``logpipe run``
    starts the server it needs after loading the config properly (a no-op when it is running), and an
    unused one exits with this process. Returns whether it started one.
    """
    early = early_start(argv)
    if early is None or early.pool != ("process", "forkserver"):
        return False
    compiled = compiled_for(early.compiled, input_bytes(early.inputs, defaults.COMPILED_MIN_BYTES))
    start_early("forkserver", compiled)
    return True


def wants_fork_server(argv: list[str]) -> bool:
    """Whether the command line ``argv`` (without the program name) runs the pipeline with parse
    workers from a fork server, judged from only what decides it: the config file's ``parse.executor``
    and ``parse.start_method`` and ``--set`` overrides of them. Unreadable configs: False."""
    early = early_start(argv)
    return early is not None and early.pool == ("process", "forkserver")

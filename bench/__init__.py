"""Benchmark harness for logpipe: the pipeline beside the yardstick peers, like with like.

Run from the repository root with the project's venv (``make bench``, ``make bench-scaling``,
``make bench-parse``)::

    .venv/bin/python -m bench [--files 8] [--lines 125000] [--gzip] [--format combined|upstream|json]
        [-r 3] [--peers polars,polars_lazy | none] [--config configs/laptop.toml] [--set key=value ...]
        [--check/--no-check] [--scaling]
    .venv/bin/python -m bench parse [--files 8] [--lines 125000] [--workers 1,2] [-r 5]

Modules, by concern:

* ``datasets``: input generated once with the yardstick generator ``../shared/bench/gen_access_logs.py``
  (``logpipe sample`` without it) and cached in ``.bench/data/<files>x<lines>[-gz][-format]/``;
* ``environment``: the peers' own venv (``.bench/peers-venv``), the package's bytecode, the machine;
* ``runners``: one command timed as a whole process tree (wall, CPU of the tree), its peak memory
  (summed PSS) sampled in a second, untimed run of the same command;
* ``compare``: every output against the reference peer's (``polars``) as sorted tables;
* ``report``: markdown tables; the pipeline's stage table is
  :func:`pipeline.diagnostics.stats.manifest_table`;
* ``cli``: the options, the alternating rounds, the results file and the exit status;
* ``parse_scaling``: the parse stage alone with 1, 2, ... worker processes.

The yardstick generator and the peers stay outside the project, in ``../shared/bench``.
This module imports nothing heavy: ``python -m bench parse`` tunes the process before numpy loads.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
BENCH_DIR = REPO / ".bench"
MB = 1_000_000


class SetupError(Exception):
    """A problem with the environment or the arguments that stops the benchmark before it starts."""


def log(msg: str) -> None:
    """Write a progress line to stderr (the report itself goes to stdout)."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def emit(text: str = "") -> None:
    """Write one line of the report to stdout."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

"""``python -m bench slow-source [--latency-ms N] -- <logpipe arguments>``: logpipe on a slow source.

Each block the read stage takes from a file first waits ``--latency-ms``, as a read from object storage
or over HTTP waits for the network (a sleep, like a socket wait, releases the GIL). The rest is the real
``logpipe`` command, run in this process with the arguments after ``--``. It shows what an I/O-bound read
stage looks like in the stage table and the report, and what more read threads do about it (README,
"Find what is slow"). Remote inputs (HTTP, S3) will make this a real network wait; until then this is
the honest stand-in: the same waits, without a server.
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str]) -> int:
    """Patch the read stage's source to wait before every block, then run ``logpipe``."""
    ap = argparse.ArgumentParser(prog="python -m bench slow-source", description=__doc__.splitlines()[0])
    ap.add_argument("--latency-ms", type=float, default=20.0, help="wait before every block read")
    ap.add_argument("logpipe", nargs=argparse.REMAINDER, help="-- then the logpipe command line")
    a = ap.parse_args(argv)
    args = a.logpipe[1:] if a.logpipe[:1] == ["--"] else a.logpipe
    if not args:
        ap.error("give the logpipe command after --, e.g. -- run -c configs/laptop.toml")

    from pipeline import read

    latency = a.latency_ms / 1000
    original = read.Source.read

    def slow_read(self: read.Source, n: int) -> bytes:
        time.sleep(latency)
        return original(self, n)

    read.Source.read = slow_read  # type: ignore[method-assign]
    from pipeline.cli import app

    try:
        app(args, prog_name="logpipe", standalone_mode=False)
    except SystemExit as exc:  # typer.Exit carries the run's exit code
        return int(exc.code or 0)
    return 0

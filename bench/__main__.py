"""``python -m bench [options]``: the benchmark; ``python -m bench parse [options]``: the parse stage alone;
``python -m bench remote [options]``: logpipe on remote inputs (HTTP with latency, moto S3);
``python -m bench serve DIR [--latency-ms N]``: a slow HTTP server of a directory's files.

Running as a package's ``__main__`` also keeps multiprocessing from re-importing this script in the
parse workers of ``bench parse``.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    """Dispatch to :mod:`bench.parse_scaling`, :mod:`bench.remote`, :mod:`bench.remote_server` or
    :mod:`bench.cli`."""
    if argv[:1] == ["parse"]:
        from pipeline.runtime import tune_process

        tune_process()  # as `logpipe run` does: before numpy starts its BLAS threads
        from bench import parse_scaling

        return parse_scaling.main(argv[1:])
    if argv[:1] == ["remote"]:
        from bench import remote

        return remote.main(argv[1:])
    if argv[:1] == ["serve"]:
        from bench import remote_server

        return remote_server.main(argv[1:])
    from bench import cli

    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""logpipe: a staged batch pipeline from web-server access logs to partitioned Parquet."""

from __future__ import annotations

from functools import cache


@cache
def _version() -> str:
    # importlib.metadata costs ~25 ms to import; only the CLI and the manifest need the version, not
    # the fork server and parse workers that import this package too
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("logpipe")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")

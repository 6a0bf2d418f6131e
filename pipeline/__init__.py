"""logpipe: a staged batch pipeline from web-server access logs to partitioned Parquet."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("logpipe")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

"""The defaults of the settings that code outside :mod:`pipeline.config` needs without importing it.

:mod:`pipeline.config` declares every setting and uses these for its own defaults. They live apart
because that module imports pydantic, which neither the parse workers nor the fork server's early
start (:mod:`pipeline.config_source`) load: the workers parse, and reach a remote input, with these
when a caller gives no value, and the early start judges a command line by them.
"""

from __future__ import annotations

from typing import Final

EXECUTOR: Final = "process"  # parse.executor
START_METHOD: Final = "forkserver"  # parse.start_method
COMPILED: Final = "auto"  # parse.compiled
# parse.compiled = "auto": the input size from which the compiled loops pay for their ~0.45 s of loading
# (BENCHMARKS.md, "One engine, compiled")
COMPILED_MIN_BYTES: Final = 128 << 20
MAX_LINE_BYTES: Final = 1 << 20  # read.max_line_bytes: longer lines are rejected
REJECT_BYTES: Final = 4096  # parse.reject_bytes: how much of a rejected line is kept
READ_MAX_RETRIES: Final = 3  # read.max_retries: retries of a failed request to a remote input
READ_TIMEOUT_S: Final = 30.0  # read.timeout_s: the most one request to a remote input may take
PARSE_MAX_RETRIES: Final = 2  # parse.max_retries: retries of a chunk whose worker died
CHUNK_TIMEOUT_S: Final = 300.0  # parse.chunk_timeout_s: the most one chunk may take to parse

"""Transforms used by the tests (imported by the parse workers as ``tests.transform_examples:NAME``)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # the workers load pandas only for the transforms that ask for a DataFrame
    import pandas as pd


def noop(table: pa.Table) -> pa.Table:
    """Returns its input: what the machinery costs."""
    return table


def depth_and_errors(table: pa.Table) -> pa.Table:
    """Adds ``path_depth``; routes 5xx responses to the rejects; drops bots."""
    depth = pc.subtract(pc.list_value_length(pc.split_pattern(pc.fill_null(table["path"], ""), "/")), 1)
    table = table.append_column("path_depth", pc.cast(depth, pa.int64()))
    reject = pc.if_else(pc.greater_equal(table["status"], 500), "server error", pa.scalar(None, pa.string()))
    table = table.append_column("_reject", reject)
    return table.filter(pc.invert(pc.fill_null(table["is_bot"], False)))


def method_lower(df: pd.DataFrame) -> pd.DataFrame:
    """A pandas transform: lower-cases the method."""
    df["method"] = df["method"].str.lower()
    return df


def explode(table: pa.Table) -> pa.Table:
    """Fails on the chunk holding a line with ``/explode`` in its path."""
    if pc.any(pc.equal(table["path"], "/explode")).as_py():
        raise RuntimeError("found /explode")
    return table


def tag(table: pa.Table) -> pa.Table:
    """Adds a constant string column ``source``."""
    return table.append_column("source", pa.repeat(pa.scalar("new"), table.num_rows))


def slow(table: pa.Table) -> pa.Table:
    """Sleeps 0.3 s per chunk: keeps chunks in flight long enough to kill a worker under them."""
    time.sleep(0.3)
    return table


def status_class(table: pa.Table) -> pa.Table:
    """``status`` as its class (2, 3, 4, 5) in an int8: older codes such as 404 do not fit int8."""
    i = table.schema.get_field_index("status")
    klass = pc.cast(pc.divide(pc.cast(table["status"], pa.int32()), 100), pa.int8())
    return table.set_column(i, "status", klass)


def bytes_float(table: pa.Table) -> pa.Table:
    """``bytes`` as float64: every older int64 value fits."""
    i = table.schema.get_field_index("bytes")
    return table.set_column(i, "bytes", pc.cast(table["bytes"], pa.float64()))


def status_text(table: pa.Table) -> pa.Table:
    """``status`` as a string."""
    i = table.schema.get_field_index("status")
    return table.set_column(i, "status", pc.cast(table["status"], pa.string()))


def hang(table: pa.Table) -> pa.Table:
    """Never returns on rows (sleeps in a loop, as a transform waiting on something that never comes);
    the empty table of the schema probe passes."""
    while table.num_rows:
        time.sleep(3600)
    return table


def exit_3(table: pa.Table) -> pa.Table:
    """Ends its worker process on its own on rows, as a library calling ``os._exit`` would."""
    if table.num_rows:
        os._exit(3)
    return table


def ignore_sigterm(table: pa.Table) -> pa.Table:
    """Makes its worker ignore SIGTERM, as some libraries' signal handling does; returns its input.
    Not on the schema probe's empty table: that one runs in the main process."""
    import signal

    if table.num_rows:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return table


def only_source_web(table: pa.Table) -> pa.Table:
    """Keeps the rows whose ``source`` column (run.source_column) is ``web``: transforms see it."""
    return table.filter(pc.equal(pc.cast(table["source"], pa.string()), "web"))


def _divisible(values: pa.ChunkedArray, n: int) -> pa.ChunkedArray:
    return pc.equal(pc.subtract(values, pc.multiply(pc.divide(values, n), n)), 0)  # integer division


def by_line(table: pa.Table) -> pa.Table:
    """Adds ``line_seen`` (the ``_line`` it was given); routes the rows of lines divisible by 3 to the
    rejects and drops those of lines divisible by 5: what it does hangs on each row's line in its file."""
    line = table["_line"]
    table = table.append_column("line_seen", line)
    reject = pc.if_else(_divisible(line, 3), "third line", pa.scalar(None, pa.string()))
    table = table.append_column("_reject", reject)
    return table.filter(pc.invert(_divisible(line, 5)))

"""Transforms: user functions that rewrite each chunk's rows inside the parse workers.

``run.transforms`` lists them, run in order::

    transforms = ["anonymize_ip", "mypkg.enrich:add_region", {name = "geoip", database = "City.mmdb"}]

An entry is a built-in's name (:mod:`pipeline.transforms.builtins`), ``"package.module:function"``, or a
table with ``name`` and the function's keyword options. A transform receives a ``pyarrow.Table`` of the
chunk's rows (a ``pandas.DataFrame`` if its first parameter is annotated so) and returns the new table;
it may add, drop or rewrite columns, and drop rows.

Why in the workers: a transform is computing, like parsing, so it runs where the parse does, one GIL per
process, on the chunk's Arrow data while it is still in cache; only the result crosses back.

Accounting stays exact. The table carries ``_line``, each row's line number in its input file. A
transform routes a row to the rejects by setting a string column ``_reject`` to the reason (null keeps
the row): the row becomes a reject with its file, line, reason and raw bytes. A row a transform drops
is counted as ``filtered``. ``_line`` and ``_reject`` are not written.

The output schema is fixed before the run: the transforms are applied once, in the main process, to an
empty table of the format's columns; each chunk's result must have those columns and types (it is
cast to them). A transform that raises fails the run with an error naming it, the input file and the
chunk's line range.
"""

from __future__ import annotations

import importlib
import inspect
import time
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.arrays import int64_array

LINE = "_line"
REJECT = "_reject"
# Options that name files: in a config file they are relative to the file's directory.
PATH_OPTIONS = ("database", "asn_database", "path")

BUILTIN_MODULE = "pipeline.transforms.builtins"
BUILTINS = ("anonymize_ip", "user_agent", "geoip")


class TransformError(Exception):
    """A transform could not be loaded, raised, or returned something unusable."""


@dataclass(frozen=True)
class TransformSpec:
    """One entry of ``run.transforms``: what to call and with which options (hashable, picklable)."""

    target: str  # a built-in's name, or "package.module:function"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.target

    @classmethod
    def parse(cls, entry: str | Mapping[str, Any]) -> TransformSpec:
        """A spec from a config entry; raises ValueError saying what an entry may be."""
        if isinstance(entry, str):
            return cls(entry)
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            options = tuple(sorted((k, _frozen(v)) for k, v in entry.items() if k != "name"))
            return cls(entry["name"], options)
        raise ValueError(
            "a transform is a built-in's name, 'package.module:function', or a table "
            "{name = '...', <option> = ...}"
        )


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


@lru_cache(maxsize=64)
def load(target: str) -> Callable[..., Any]:
    """The function ``target`` names (imported once per process)."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        if target not in BUILTINS:
            raise TransformError(
                f"transform {target!r}: not a built-in ({', '.join(BUILTINS)}) nor 'package.module:function'"
            )
        module_name, attr = BUILTIN_MODULE, target
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TransformError(f"transform {target!r}: cannot import {module_name}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise TransformError(f"transform {target!r}: {module_name} has no function {attr!r}")
    return fn  # type: ignore[no-any-return]


@lru_cache(maxsize=64)
def wants_pandas(target: str) -> bool:
    """Whether the transform's first parameter is annotated ``pandas.DataFrame``."""
    fn = load(target)
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        raise TransformError(f"transform {target!r} takes no argument; it must take the chunk's table")
    try:
        hint: Any = typing.get_type_hints(fn).get(params[0].name)
    except (NameError, TypeError):  # a string annotation that does not resolve here
        hint = params[0].annotation
    text = (
        hint
        if isinstance(hint, str)
        else f"{getattr(hint, '__module__', '')}.{getattr(hint, '__name__', '')}"
    )
    return text.endswith("DataFrame") and "pyarrow" not in text


@dataclass
class Applied:
    """A chunk's rows after the transforms."""

    table: pa.Table  # without _line and _reject
    lines: np.ndarray[Any, Any]  # the line number of each row
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line, reason) routed by transforms
    filtered: int = 0  # rows the transforms dropped
    seconds: dict[str, float] = field(default_factory=dict)


def apply(
    specs: Sequence[TransformSpec], table: pa.Table, lines: np.ndarray[Any, Any], schema: pa.Schema | None
) -> Applied:
    """Run ``specs`` in order over ``table`` (rows of line numbers ``lines``); cast to ``schema``."""
    table = table.append_column(LINE, int64_array(lines))
    rows_in = table.num_rows
    out = Applied(table, lines)
    rejected: list[tuple[int, str]] = []
    for spec in specs:
        t0 = time.perf_counter()
        table = _call(spec, table)
        if REJECT in table.column_names:
            table, routed = _route(spec, table)
            rejected += routed
        out.seconds[spec.name] = out.seconds.get(spec.name, 0.0) + time.perf_counter() - t0
    out.lines = _int64s(table.column(LINE))
    out.table = table.drop_columns([LINE])
    if schema is not None:
        out.table = _conform(out.table, schema)
    out.rejects = rejected
    out.filtered = rows_in - table.num_rows - len(rejected)
    return out


def _int64s(column: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    """An int64 column without nulls as numpy, from its buffers (``to_numpy`` would import pandas)."""
    parts = [
        np.frombuffer(c.buffers()[1], dtype=np.int64, count=len(c) + c.offset)[c.offset :]
        # no cast when it is int64 already: cast imports pyarrow.compute, which the main process (it
        # runs the transforms on an empty table for the output's schema) otherwise never needs
        for c in (column if column.type == pa.int64() else column.cast(pa.int64())).chunks
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _call(spec: TransformSpec, table: pa.Table) -> pa.Table:
    fn = load(spec.target)
    options = dict(spec.options)
    try:
        if wants_pandas(spec.target):
            frame = table.to_pandas()
            result = fn(frame, **options)
            import pandas as pd  # the transform asked for pandas: it is loaded already

            if isinstance(result, pd.DataFrame):
                result = pa.Table.from_pandas(result, preserve_index=False)
        else:
            result = fn(table, **options)
    except Exception as exc:
        raise TransformError(f"transform {spec.name!r} failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(result, pa.RecordBatch):
        result = pa.Table.from_batches([result])
    if not isinstance(result, pa.Table):
        raise TransformError(
            f"transform {spec.name!r} returned {type(result).__name__}, "
            "not a pyarrow.Table or pandas.DataFrame"
        )
    if LINE not in result.column_names or result.num_rows > table.num_rows:
        raise TransformError(
            f"transform {spec.name!r} must keep the {LINE!r} column and may not add rows "
            f"(got {result.num_rows} rows from {table.num_rows})"
        )
    return result


def _route(spec: TransformSpec, table: pa.Table) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Split off the rows whose ``_reject`` is set: (the rest without the column, their lines and reasons)."""
    import pyarrow.compute as pc  # workers have it warm; see pipeline.formats.vector

    reason = table.column(REJECT)
    if not pa.types.is_string(reason.type) and not pa.types.is_large_string(reason.type):
        raise TransformError(f"transform {spec.name!r}: {REJECT!r} must be a string column (the reason)")
    marked = pc.is_valid(reason)
    routed = table.filter(marked)
    pairs = list(zip(routed.column(LINE).to_pylist(), routed.column(REJECT).to_pylist(), strict=True))
    kept = table.filter(pc.invert(marked)).drop_columns([REJECT])
    return kept, [(int(line), str(why)) for line, why in pairs]


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns in its order and types, or a TransformError."""
    if table.schema.equals(schema):
        return table
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise TransformError(
            f"the transforms returned columns that differ from those they return for an empty table "
            f"(missing {missing}, unexpected {extra}): a transform must always return the same columns"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TransformError(f"the transforms' columns do not cast to the output schema: {exc}") from exc


def output_schema(specs: Sequence[TransformSpec], schema: pa.Schema) -> pa.Schema:
    """The columns a run writes: the transforms applied to an empty table of the format's columns.
    ``date`` is the partition column and ``ts`` what it comes from: both must survive."""
    if not specs:
        return schema
    empty = pa.Table.from_batches([], schema)
    result = apply(specs, empty, np.zeros(0, dtype=np.int64), None).table
    if "ts" not in result.column_names or not pa.types.is_timestamp(result.schema.field("ts").type):
        raise TransformError(
            "the transforms must keep the timestamp column 'ts': the output is partitioned by it"
        )
    if "date" in result.column_names:
        raise TransformError("a transform may not add a column 'date': it is the partition column")
    return result.schema.remove_metadata()
